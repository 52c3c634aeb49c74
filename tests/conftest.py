"""Shared fixtures: a tiny formulation data set with a known hidden rule."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from mrl.data import FormulaData, load_formulas


def tiny_tables(n_materials: int = 30, n_formulas: int = 600, seed: int = 0,
                conditions: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Formulas (content in %) and properties whose target depends on content-weighted sums of hidden vectors."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_materials, 3))
    rows, props = [], []
    for f in range(n_formulas):
        k = int(rng.integers(2, 7))
        mats = rng.choice(n_materials, k, replace=False)
        c = rng.dirichlet(np.ones(k)) * 100
        rows += [(f"F{f:04d}", f"M{m:03d}", float(cc)) for m, cc in zip(mats, c)]
        mix = (c[:, None] / 100 * z[mats]).sum(0)
        row = {"formula_id": f"F{f:04d}"}
        if conditions:
            row["T"] = float(rng.uniform(280, 360))
            row["viscosity"] = float(np.exp(mix[0] + np.tanh(mix[1]) * mix[2] + 300.0 / row["T"]) * 100)
        else:
            row["viscosity"] = float(np.exp(mix[0] + np.tanh(mix[1]) * mix[2]) * 100)
        props.append(row)
    return pd.DataFrame(rows, columns=["formula_id", "material_id", "content"]), pd.DataFrame(props)


@pytest.fixture
def tiny_data() -> FormulaData:
    forms, props = tiny_tables()
    return load_formulas(forms, props, name="tiny")


@pytest.fixture
def tiny_data_t() -> FormulaData:
    forms, props = tiny_tables(conditions=True)
    return load_formulas(forms, props, conditions=["T"], name="tiny_t")


#: Families the tiny lab's materials cycle through (design constraints act on families).
TINY_FAMILIES = ["active", "preservative", "thickener", "solvent", "emollient"]


def tiny_lab_run(root: Path, **params) -> Path:
    """A run folder of :func:`tiny_tables` (with a materials table naming each material and its family, from
    :data:`TINY_FAMILIES`) trained with ``params`` under ``root``."""
    from mrl.params import RunParams
    from mrl.runs import run_experiment

    forms, props = tiny_tables()
    folder = root / "data"
    folder.mkdir()
    forms.to_csv(folder / "formulas.csv", index=False)
    props.to_csv(folder / "properties.csv", index=False)
    ids = sorted(forms["material_id"].unique())
    pd.DataFrame({"material_id": ids, "name": [f"Material {m[1:]}" for m in ids],
                  "family": [TINY_FAMILIES[i % len(TINY_FAMILIES)] for i in range(len(ids))]}).to_csv(
        folder / "materials.csv", index=False)
    return run_experiment(RunParams(name="tiny", runs_dir=str(root / "runs"), data=str(folder), **params),
                          progress=False)

def first_formula(data, min_ingredients: int = 5) -> pd.DataFrame:
    """The first formula of ``data`` with at least ``min_ingredients`` ingredients, contents in % (long format)."""
    sizes = data.formulas.groupby("formula_id").size()
    fid = sizes[sizes >= min_ingredients].index[0]
    return data.formulas[data.formulas["formula_id"] == fid].assign(content=lambda f: f["content"] * 100)


def load_benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` (not a package) imported as a module, e.g. ``load_benchmark("design")``."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
