"""Each material's neighbours with the ensemble members' agreement per neighbour (issue 25, deliverable 5)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mrl.book import _neighbours_page
from mrl.io import write_table
from mrl.run_files import EMBEDDINGS, member_dir
from mrl.run_outputs import member_embeddings, neighbour_agreement_table


def _emb(vectors: list[list[float]]) -> pd.DataFrame:
    n = len(vectors)
    out = pd.DataFrame(np.asarray(vectors, float), columns=[f"e{i}" for i in range(len(vectors[0]))])
    return out.assign(material_id=[f"M{i}" for i in range(n)], name=[f"Material {i}" for i in range(n)],
                      family=["oil", "oil", "wax", "wax"][:n], n_formulas=[40, 30, 20, 10][:n],
                      norm=np.linalg.norm(out.to_numpy(), axis=1))


OWN = _emb([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
SAME = _emb([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
SWAPPED = _emb([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]])  # M0's nearest is M2 here


def test_each_neighbour_carries_how_many_members_list_it():
    table = neighbour_agreement_table(OWN, [SAME, SWAPPED], k=1)
    first = table[table["material_id"] == "M0"].iloc[0]
    assert first["neighbour_id"] == "M1" and first["agree"] == 1 and first["members"] == 2
    assert neighbour_agreement_table(OWN, [SAME, SAME], k=1).query("material_id == 'M0'")["agree"].iloc[0] == 2
    single = neighbour_agreement_table(OWN, [], k=1)
    assert single["agree"].isna().all()


def test_the_page_lists_the_most_used_first_with_agreement_and_a_filter(tmp_path, monkeypatch):
    import mrl.book

    monkeypatch.setattr(mrl.book, "NEIGHBOURS_K", 1)
    monkeypatch.setattr(mrl.book, "NEIGHBOURS_CSV_K", 1)
    run = tmp_path / "run"
    for k, table in enumerate([SAME, SWAPPED], start=1):
        write_table(table, member_dir(run, k) / EMBEDDINGS)
    assert len(member_embeddings(run)) == 2
    out = tmp_path / "pages"
    (out / "run").mkdir(parents=True)
    text = _neighbours_page(run, OWN, out, "run")
    assert "**Material 0** (M0; oil, 40 formulas): Material 1 (0.01; 1 of 2 other members)" in text
    assert "in 50 % of cases" in text  # the swapped member lists none of the own neighbours
    assert "ensemble of 3 models" in text and 'type="search"' in text
    assert (out / "run" / "neighbours.csv").exists()
    alone = _neighbours_page(tmp_path / "single", OWN, out, "run")
    assert "single model" in alone and "other members" not in alone
