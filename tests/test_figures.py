"""Figures for readers (issue 25): units and legends, hover content in %, titled interactive pages, the evolution
with a step slider."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mrl.plots import evolution_html, material_map_html, parity
from mrl.run_outputs import column_words, format_cell, show_table


def _emb(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"material_id": [f"M{i}" for i in range(n)], "name": [f"Material {i}" for i in range(n)],
                         "family": ["oil", "wax"] * (n // 2), "n_formulas": np.arange(n) + 1,
                         "median_content": [0.0004, 0.8, 0.01, 0.02, 0.03, 0.5][:n], "norm": rng.random(n),
                         "e0": rng.normal(size=n), "e1": rng.normal(size=n)})


def test_map_page_has_a_title_and_hover_in_percent():
    emb = _emb()
    page = material_map_html(emb[["e0", "e1"]].to_numpy(), emb, title="Materials, PCA", plotlyjs="plotly.min.js")
    assert "<title>Materials, PCA</title>" in page
    assert "median content %{customdata[4]:.3~g} %" in page
    assert "0.04" in page  # 0.0004 as a fraction is 0.04 %


def test_evolution_page_has_a_step_slider_and_a_title():
    emb = _emb()
    frames = pd.DataFrame([{"step": step, "material_id": m, "x": step * 0.1 * i, "y": -step * 0.05 * i}
                           for step in (0, 1000, 2000) for i, m in enumerate(emb["material_id"])])
    page = evolution_html(frames, emb, "Materials through training", plotlyjs="plotly.min.js")
    assert "<title>Materials through training</title>" in page
    assert '"frames"' in page or "addFrames" in page
    assert "training step " in page and '"2,000"' in page


def test_parity_legend_has_no_e_notation():
    y = np.array([1000.0, 20000.0, 3000.0, 45000.0])
    fig = parity(y, y * 1.3, np.array(["train", "train", "eval", "eval"]), label="viscosity (cP)")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("MAE 3,150" in t for t in labels) and any("MAE 7,200" in t for t in labels) and not any("e+0" in t for t in labels)
    assert fig.axes[0].get_xlabel() == "measured viscosity (cP)"


def test_notebook_tables_have_word_headers_units_and_no_e_notation():
    assert column_words("mae", "cP") == "MAE (cP)" and column_words("mae") == "MAE"
    assert column_words("mae_log10") == "MAE of log10" and column_words("n") == "formulas"
    assert format_cell(5600.4) == "5,600" and format_cell(0.000123456) == "0.000123" and format_cell(3000) == "3,000"
    html = show_table(pd.DataFrame({"split": ["eval"], "n": [600], "mae": [5870.2]}), unit="cP").to_html()
    assert "MAE (cP)" in html and "5,870" in html and "e+0" not in html and "padding" in html
