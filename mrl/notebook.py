"""A thin notebook that opens one run for exploration (``mrl notebook RUN``).

:func:`explore_notebook` builds it from :data:`CELLS`: load the run, its material map, a material's nearest
neighbours, the prediction of a new formula (an existing one with a changed content), and a design towards a target.
Every code cell calls the package (no logic lives in the notebook); the first code cell holds the parameters
(tagged ``parameters``, so papermill can set them). :func:`write_notebook` writes it beside the run.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from mrl.io import atomic_path
from mrl.runs import load_run

log = logging.getLogger(__name__)

#: The notebook's cells after the parameters: ``(kind, source)``, kind ``"markdown"`` or ``"code"``.
CELLS: tuple[tuple[str, str], ...] = (
    ("markdown", "## The run\nIts errors per split (in the property's units) and the share of measurements inside "
                 "the 80 % / 95 % intervals."),
    ("code", """%matplotlib inline
import os

import pandas as pd

from mrl.analysis import nearest_neighbors
from mrl.design import design
from mrl.plots import material_map
from mrl.run_outputs import map_coordinates, metrics_table
from mrl.runs import load_run

os.chdir(work_dir)  # the run's params name its data relative to the folder it was trained from
run = load_run(run_dir)
data, _ = run.data()
print(f"{run.metrics['target']}: {run.metrics['n_formulas']} formulas, {run.metrics['n_materials']} materials, "
      f"embedding size {run.metrics['embedding_dim']}")
display(metrics_table(run.metrics))
pd.DataFrame(run.metrics.get("intervals", {})).T"""),
    ("markdown", "## The material map\nEach dot is a material (dose-weighted vector, uncentred PCA: the cross is the "
                 "origin, where a material has no influence), coloured by family."),
    ("code", """coords, origin = map_coordinates(run, "pca")
material_map(coords, run.embeddings, origin=origin, annotate=12, zoom=True)"""),
    ("markdown", "## A material's neighbours\nThe materials whose vectors point most nearly the same way "
                 "(cosine distance): candidates to behave alike. Set `material` above to another id."),
    ("code", """emb = run.embeddings
if material is None:  # the most used material that has a direction (the pinned base has none)
    material = emb[emb["norm"] > 0].sort_values("n_formulas", ascending=False)["material_id"].iloc[0]
nearest_neighbors(emb, material, k=10)"""),
    ("markdown", "## Predict a new formula\nA copy of an existing formula with its largest content raised by 10 % "
                 "(contents are normalised to 100 %): edit `new` to try your own."),
    ("code", """if formula is None:  # the first eval formula
    formula = run.predictions.query("split == 'eval'")["formula_id"].iloc[0]
original = data.formulas[data.formulas["formula_id"] == formula]
new = original.assign(formula_id="NEW-1")
new.loc[new["content"].idxmax(), "content"] *= 1.1
conditions = None
if data.conditions:
    conditions = data.properties.loc[data.properties["formula_id"] == formula,
                                     ["formula_id", *data.conditions]].head(1).assign(formula_id="NEW-1")
run.predict(new, conditions)"""),
    ("markdown", "## Design a formula for a target\nContent changes (at most 3 materials) that move the formula's "
                 "predicted property to `target` (default: twice its measurement). A proposal is *vouched* when it "
                 "stays inside the training domain with the target inside its 80 % interval."),
    ("code", """row = data.properties[data.properties["formula_id"] == formula].iloc[0]
measured = float(row[run.metrics["target"]])
goal = target if target is not None else 2 * measured
cond = {c: float(row[c]) for c in data.conditions}
result = design(run.predictor, original, goal, conditions=cond, max_changes=3, measured=measured,
                steps=design_steps)
result.proposals[["proposal", "prediction", "lower_80", "upper_80", "vouched", "changes"]]"""),
)


def explore_notebook(run_dir: str, work_dir: str, material: str | None = None, formula: str | None = None,
                     target: float | None = None, design_steps: int = 150):
    """The exploration notebook of the run at ``run_dir`` (relative to ``work_dir``, the folder whose relative paths
    the run's params use, e.g. its data) as an ``nbformat`` notebook; ``material``, ``formula`` and ``target`` preset
    its parameters (``None``: the most used material, the first eval formula, twice its measurement)."""
    import nbformat  # heavy (~2 s of jsonschema format checks on import): only this command needs it

    name = Path(run_dir).name
    params = "\n".join([
        "# parameters (papermill may set them)",
        f"work_dir = {work_dir!r}  # the folder the run was made from (its data path is relative to it)",
        f"run_dir = {run_dir!r}  # the run folder, relative to work_dir",
        f"material = {material!r}  # a material id; None: the most used one",
        f"formula = {formula!r}  # a formula id of the run's data; None: the first eval formula",
        f"target = {target!r}  # the design's target in the property's units; None: twice the measurement",
        f"design_steps = {design_steps!r}  # gradient steps of the design search",
    ])
    cells = [nbformat.v4.new_markdown_cell(f"# Explore run {name}\nWritten by `mrl notebook`; run all cells."),
             nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
              for kind, src in CELLS]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def write_notebook(run: str | Path, out: str | Path | None = None, overwrite: bool = False,
                   work_dir: str | Path | None = None) -> Path:
    """Write the exploration notebook of a finished run to ``out`` (default: ``<run>.ipynb`` beside the run folder)
    and return its path. The notebook works in ``work_dir`` (default: the current folder, where the run was
    presumably trained: its params name the data relative to it) and names the run relative to it.

    Raises:
        FileNotFoundError: ``run`` is not a finished run folder.
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    run_path = load_run(run).path.resolve()
    out = Path(out) if out is not None else run_path.parent / f"{run_path.name}.ipynb"
    if out.suffix != ".ipynb":
        raise ValueError(f"{out}: a notebook path must end in .ipynb")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; give --overwrite to replace it (or --out another path)")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir if work_dir is not None else Path.cwd()).resolve()
    rel = Path(os.path.relpath(run_path, work)).as_posix()
    log.info("notebook works in %s (the run's relative data paths are read from there), run %s", work, rel)

    import nbformat

    with atomic_path(out) as tmp:
        nbformat.write(explore_notebook(rel, str(work)), tmp)
    log.info("notebook for %s: %s", run_path, out)
    return out
