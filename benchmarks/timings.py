"""Wall times of the main job (and, filled in from CI, the test suite) for the Timings section of
``book/performance.md``. Not a test.

    python benchmarks/timings.py                      # time the main job, write benchmarks/results/timings.json
    python benchmarks/timings.py --test-suite 560 5 720 --test-command "CI=true bash .ci/run"   # CI's figure only
    python benchmarks/timings.py --render benchmarks/results/timings.json --book book/performance.md

**Main job**: the README's first line, ``mrl sweep params/lab_small.yaml && mrl report runs/lab_small``, run from an
empty folder outside the checkout (``--work``), each command a subprocess of this Python with this checkout on
``PYTHONPATH`` (as an install would run it); the sweep file's workers, each with ``cpu_count // jobs`` torch threads.
Each command's wall time, the load (1/5/15-minute averages) before and after, the date and the machine go into the
result file.

**Test suite**: not timed here (the lead's CI runs it). ``--test-suite PASSED SKIPPED SECONDS`` writes CI's figure
into the result's :data:`TEST_SUITE` field and keeps the rest; the page states a test-suite time only when that field
is filled.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from workflow import run_step  # benchmarks/workflow.py: one command as a subprocess, its output in a log

from mrl.book import fill_from_results, markdown_table
from mrl.io import read_json, write_json
from mrl.wording import format_number

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "timings.json"
SWEEP = "params/lab_small.yaml"
#: The result file's field for the test suite's figure from CI (``passed``, ``skipped``, ``seconds``, ``command``,
#: ``date``, ``cores``); absent or null: the page says nothing about the test suite's time.
TEST_SUITE = "test_suite"


def machine() -> dict:
    """Cores, Python, the date (UTC) and the load now."""
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": [round(v, 2) for v in os.getloadavg()]}


def main_job(work: Path) -> dict:
    """Run the main job in the empty folder ``work``; return its commands with their wall times and the machine."""
    if work.exists():
        shutil.rmtree(work)
    logs = work / "logs"
    logs.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    mrl = [sys.executable, "-m", "mrl.cli"]
    before = machine()
    steps = []
    for name, argv, shown in (("sweep", [*mrl, "sweep", str(ROOT / SWEEP)], f"mrl sweep {SWEEP}"),
                              ("report", [*mrl, "report", "runs/lab_small"], "mrl report runs/lab_small")):
        steps.append({"step": name, "command": shown, "wall_s": run_step(name, argv, work, logs, env)})
    return {"command": " && ".join(s["command"] for s in steps), "steps": steps,
            "total_s": sum(s["wall_s"] for s in steps), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "machine": {**{k: v for k, v in before.items() if k != "load"}, "load_start": before["load"],
                        "load_end": machine()["load"]}}


def _minutes(seconds: float) -> str:
    """``2 min 31 s`` (or ``45 s``)."""
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def render_timings(results: dict) -> str:
    """The main job's wall times and, when CI's figure is in the file, the test suite's."""
    job = results.get("main_job")
    if not job:
        return "*The main job is not timed in this result file: run `python benchmarks/timings.py`.*"
    m = job["machine"]
    frame = pd.DataFrame([{"step": s["step"], "command": f"`{s['command']}`", "wall time (s)": s["wall_s"]}
                          for s in job["steps"]])
    busy = max(m["load_start"][0], m["load_end"][0]) > m["cores"]
    lines = [f"* **Main job** (the README's first command, from an empty folder outside the checkout; measured on "
             f"{m['date']}, single run): **{_minutes(job['total_s'])}** on {m['cores']} cores, load "
             f"{' / '.join(format_number(v, 2) for v in m['load_start'])} at the start and "
             f"{' / '.join(format_number(v, 2) for v in m['load_end'])} at the end (1 / 5 / 15-minute averages)"
             + (": other jobs shared the cores, so this is an upper bound of an idle machine's time." if busy
                else "."), "", markdown_table(frame)]
    tests = results.get(TEST_SUITE)
    if tests:
        lines.append(f"* **Tests** from a clean clone (`{tests['command']}`, {tests.get('date', 'date not given')}, "
                     f"{tests.get('cores', '?')} cores): {tests['passed']:,} passed, {tests['skipped']:,} skipped in "
                     f"{_minutes(tests['seconds'])}.")
    return "\n".join(lines)


#: Regions of book/performance.md filled from benchmarks/results/timings.json: marker name -> render function.
SECTIONS = {"timings": render_timings}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mrl_timings"), help="empty folder for the main job "
                        "(outside the checkout; emptied first)")
    parser.add_argument("--json", type=Path, default=RESULT, help="result file (other fields are kept)")
    parser.add_argument("--test-suite", nargs=3, type=float, metavar=("PASSED", "SKIPPED", "SECONDS"),
                        help="only write CI's test-suite figure into the result file")
    parser.add_argument("--test-command", default="CI=true bash .ci/run", help="with --test-suite: what CI ran")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only render the page's section from this result file")
    parser.add_argument("--book", type=Path, default=None, help="with --render: fill the marked region of this page")
    args = parser.parse_args(argv)
    if args.render:
        out = fill_from_results(read_json(args.render), SECTIONS, args.book)
        print(f"wrote {out}" if args.book else out)
        return
    result = read_json(args.json) if args.json.exists() else {}
    if args.test_suite:
        passed, skipped, seconds = args.test_suite
        result[TEST_SUITE] = {"passed": int(passed), "skipped": int(skipped), "seconds": seconds,
                              "command": args.test_command, "cores": os.cpu_count(),
                              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    else:
        if args.work.resolve().is_relative_to(ROOT):
            raise ValueError(f"--work {args.work} is inside the checkout {ROOT}: the main job runs from outside it")
        result["main_job"] = main_job(args.work)
        result.setdefault(TEST_SUITE, None)
        print(f"main job: {_minutes(result['main_job']['total_s'])}")
    write_json(result, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
