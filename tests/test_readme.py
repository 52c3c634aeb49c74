"""Every command in the README runs as written.

The README's fenced ``bash`` blocks are split into commands (one a line, ``&&`` chains split, comments dropped) and
its ``python`` blocks taken whole; each runs in README order in one temporary folder holding copies of ``params/``
and ``book/`` (what the commands read from a fresh clone) and the input files the README's commands name. Only the
training length is changed: ``steps:`` in the copied YAML files and ``steps=N`` in commands and Python become
:data:`TINY_STEPS`, a sweep's grid keeps its first two values and its map notebook draws PCA maps only. Commands too
long or not meant for a test are listed in :data:`SKIP` with the reason; everything else runs.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TINY_STEPS = 30
#: Command (regular expression, matched at its start) -> why the test does not run it.
SKIP = {
    r"pip install": "installs the package; the tests run in the installed package",
    r"python -m pytest": "the test suite itself",
    r"bash \.ci/run": "install and the whole test suite",
    r"python benchmarks/": "a benchmark: minutes to hours of training, some on downloaded real data",
    r"mrl (sweep|report) \S*lab_seed_scale": "the seed-scale sweep: hours on CPU",
    r"time ": "a timing of the main job, which runs above",
}
#: Lighter map notebook options for sweeps (what is under test is that the command runs, not the maps).
FAST_VISUALIZE = {"map_methods": ["pca"], "n_frames": 4, "gif_frames": 4, "influence_formulas": 20, "n_pairs": 5}


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def readme_commands(text: str) -> list[tuple[str, str]]:
    """``("bash", command)`` for each command of the bash blocks and ``("python", code)`` for each python block."""
    out = []
    for language, code in readme_blocks(text):
        if language == "python":
            out.append(("python", code))
        elif language in ("bash", "sh", "shell"):
            for line in code.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                out += [("bash", part.strip()) for part in line.split("&&") if part.strip()]
    return out


def skip_reason(command: str) -> str | None:
    return next((reason for pattern, reason in SKIP.items() if re.match(pattern, command)), None)


def tiny(code: str) -> str:
    """Training length made tiny in a command or a Python block."""
    return re.sub(r"\bsteps\s*=\s*\d+", f"steps={TINY_STEPS}", code)


def _tiny_yaml(path: Path) -> None:
    """Rewrite a copied params file: tiny steps; for a sweep also two grid values and PCA maps only."""
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict):
        return
    if "grid" in spec:
        spec["base"] = {**(spec.get("base") or {}), "steps": TINY_STEPS}
        spec["grid"] = {k: list(v)[:2] for k, v in spec["grid"].items()}
        nb_params = dict(spec.get("notebook_params") or {})
        nb_params["04_visualize"] = {**(nb_params.get("04_visualize") or {}), **FAST_VISUALIZE}
        spec["notebook_params"] = nb_params
    elif "steps" in spec:
        spec["steps"] = TINY_STEPS
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def _new_formulas(folder: Path) -> None:
    """``new_formulas.csv`` of the README's ``mrl predict``: five lab formulas in the long format, new ids, no
    measurement."""
    from mrl.synth import make_lab

    data, _ = make_lab("small")
    fids = list(data.formula_ids[:5])
    forms = data.formulas[data.formulas["formula_id"].isin(fids)].copy()
    forms["formula_id"] = "NEW-" + forms["formula_id"].astype(str)
    forms["content"] *= 100.0
    forms.to_csv(folder / "new_formulas.csv", index=False)


def _measured(folder: Path) -> None:
    """``measured.csv`` of the README's ``mrl add-results``: the suggested batch (``next_round/formulas.csv``) measured
    by the synthetic lab's hidden rule with its noise, as a formulator's lab would."""
    import pandas as pd

    from mrl.synth import PRESETS, hidden_viscosity, make_lab

    _, truth = make_lab("small")
    forms = pd.read_csv(folder / "next_round" / "formulas.csv")
    values = hidden_viscosity(forms[["formula_id", "material_id", "content"]], truth, noise=PRESETS["small"].noise)
    pd.DataFrame({"formula_id": values.index, "viscosity": values.to_numpy()}).to_csv(folder / "measured.csv",
                                                                                     index=False)


COMMANDS = readme_commands(README.read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A fresh clone's view: params/ and book/ copies (tiny steps), and the inputs the README's commands name."""
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "params", work / "params")
    for path in (work / "params").glob("*.yaml"):
        _tiny_yaml(path)
    shutil.copytree(ROOT / "book", work / "book", ignore=shutil.ignore_patterns("_build", "generated"))
    _new_formulas(work)
    return work


def test_readme_has_commands():
    kinds = [kind for kind, _ in COMMANDS]
    assert kinds.count("bash") >= 6 and "python" in kinds
    assert any(cmd.startswith("mrl train --params params/run.yaml") for _, cmd in COMMANDS)
    assert (ROOT / "params" / "run.yaml").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind,code", COMMANDS, ids=[c.splitlines()[-1][:60] for _, c in COMMANDS])
def test_readme_command_runs(workdir, kind, code):
    reason = skip_reason(code) if kind == "bash" else None
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if "measured.csv" in code and not (workdir / "measured.csv").exists():
        _measured(workdir)
    if kind == "bash":
        argv = ["bash", "-c", tiny(code)]
    else:
        script = workdir / "readme_block.py"
        script.write_text(tiny(code))
        argv = [sys.executable, str(script)]
    proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, f"{code}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_readme_is_short_and_tells_results_not_history():
    text = README.read_text()
    assert len(text.splitlines()) <= 170
    for word in (r"\bsessions?\b", r"\bmissed\b", r"\bload ~?\d", r"\bearlier\b"):
        assert not re.search(word, text, flags=re.I), word
    assert text.splitlines()[2] == "```bash" and "mrl sweep" in text.splitlines()[3] and "pytest" in text.splitlines()[4]
    for section in ("## What it does", "## Quick start", "## Data formats", "## Commands", "## The report",
                    "## Licence and citation"):
        assert section in text, section
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] and citation["title"] and citation["authors"]


def test_readme_links_and_yaml_examples_are_valid():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    for language, code in readme_blocks(text):
        if language == "yaml":
            assert isinstance(yaml.safe_load(code), dict)


def test_readme_command_table_lists_every_subcommand():
    from mrl.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    table = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in sub.choices if f"`mrl {name}" not in table and f"mrl {name} " not in table]
    assert not missing, missing



def test_every_command_of_the_table_runs_in_the_readme_test():
    table = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"^\| `(mrl [^`]+)` \|", table, flags=re.M)
    assert len(examples) >= 10
    runs = {code for language, code in readme_commands(README.read_text()) if language == "bash"}
    not_run = [command for command in examples if command not in runs]
    assert not not_run, f"table commands that no README block runs as written: {not_run}"
