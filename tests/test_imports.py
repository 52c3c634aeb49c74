"""The package's import graph: no circles, and mrl's own modules imported at the top of each module.

Lazy imports (inside functions) are kept only for heavy optional third-party libraries (docs/DESIGN.md says which);
an import of another mrl module inside a function hides a real dependency and is refused here.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mrl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    nodes: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes |= {id(n) for n in ast.walk(node)}
    return nodes


def mrl_imports(path: Path) -> list[tuple[str, bool, int]]:
    """``(imported mrl module, at top level, line)`` for every run-time import of an mrl module in ``path``."""
    tree = ast.parse(path.read_text())
    top, skip = {id(n) for n in tree.body}, _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.module == "mrl":
            names = [f"mrl.{a.name}" for a in node.names]
        else:
            names = [node.module or ""]
        found += [(name, id(node) in top, node.lineno) for name in names if name.startswith("mrl.")]
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the mrl modules it imports at run time (top level or inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {name for name, _, _ in mrl_imports(p) if name in modules and name != m} for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_run_file_names_module_is_the_ground_floor():
    assert import_graph()["mrl.run_files"] == set()


# ----- one table of defaults: RunParams ------------------------------------------------------------------------
def test_the_estimator_and_the_loop_take_their_defaults_from_run_params():
    import inspect
    from dataclasses import MISSING, fields

    from mrl.estimator import MixtureRegressor
    from mrl.params import RunParams
    from mrl.train import LoopConfig

    defaults = RunParams().to_dict()
    signature = inspect.signature(MixtureRegressor.__init__).parameters
    shared = [k for k in signature if k in defaults]
    assert len(shared) >= 30
    for key in shared:
        value = signature[key].default
        expected = defaults[key]
        if key == "tie":
            assert value is None and expected == {}
        else:
            assert (list(value) if isinstance(value, tuple) else value) == expected, key
    for f in fields(LoopConfig):
        if f.default is not MISSING and f.name != "schedule_steps":  # the loop's own: steps auto's refit sets it
            assert f.default == defaults[f.name], f.name


def test_the_notebooks_parameter_cells_hold_run_params_defaults():
    from mrl.params import RunParams
    from mrl.sweep import notebook_parameters

    defaults = RunParams().to_dict()
    checked = 0
    for notebook in sorted((PACKAGE.parent / "notebooks").glob("*.ipynb")):
        for key, spec in notebook_parameters(notebook).items():
            if key in defaults and key not in ("name", "runs_dir"):  # notebooks' own folder defaults
                assert ast.literal_eval(spec["default"]) == defaults[key], f"{notebook.name}: {key}"
                checked += 1
    assert checked >= 10


def test_a_sweep_point_passes_run_params_defaults_to_the_notebooks_and_records_them(tmp_path):
    import yaml

    from mrl.params import RunParams
    from mrl.sweep import load_sweep

    spec = {"name": "s", "data_notebook": None, "notebooks": ["02_train"], "base": {"steps": 30},
            "grid": {"embedding_dim": [2]}, "point_name": "d{embedding_dim}"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    (point,) = load_sweep(path, runs_dir=str(tmp_path)).points()
    given = point.parameters["02_train"]
    defaults = RunParams().to_dict()
    assert given["steps"] == 30 and given["embedding_dim"] == 2
    for key in ("eval_every", "snapshot_every", "checkpoint_every", "lr", "batch_size", "seed"):
        assert given[key] == defaults[key] == point.params[key], key


#: Libraries a function may import where it needs them (docs/DESIGN.md): heavy, needed by one code path only.
#: chemprop (features: graph, mrl.graph) takes seconds to import (it brings Lightning): only graph models need it.
LAZY_ALLOWED = ("umap", "rdkit", "lightgbm", "plotly", "papermill", "h5py", "dask", "distributed", "nbformat",
                "chemprop")


def function_level_imports(path: Path) -> list[tuple[str, int]]:
    """``(module, line)`` of every import inside a function or class body of ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body} | _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [(name, node.lineno) for name in names]
    return found


def test_imports_sit_at_the_top_except_heavy_optional_libraries():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
                 for path in sorted(PACKAGE.rglob("*.py")) for name, line in function_level_imports(path)
                 if name.split(".")[0] not in LAZY_ALLOWED]
    assert not offenders, "\n".join(offenders)


def test_the_import_checks_can_fail(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    import json\n    from mrl import data\n    import umap\n")
    assert [name for name, _ in function_level_imports(module)] == ["json", "mrl", "umap"]
