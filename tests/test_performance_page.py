"""book/performance.md states only numbers rendered from its result files (issue 25): the page equals its rendering
from benchmarks/results/speed.json and timings.json, and a changed number in a result changes the sentence."""
from __future__ import annotations

import copy
import re

from test_book_wording import ROOT, _assert_rendered, _json, load_benchmark

PAGE = "performance.md"


def test_page_is_rendered_from_its_result_files():
    speed, timings = load_benchmark("speed"), load_benchmark("timings")
    _assert_rendered(speed.SECTIONS, _json("speed.json"), PAGE, "python benchmarks/speed.py --render "
                     "benchmarks/results/speed.json --book book/performance.md")
    _assert_rendered(timings.SECTIONS, _json("timings.json"), PAGE, "python benchmarks/timings.py --render "
                     "benchmarks/results/timings.json --book book/performance.md")
    text = (ROOT / "book" / PAGE).read_text()
    assert not re.search(r"\d\.?\d*e[+-]?\d", text), "a number in e-notation"
    assert "376 passed" not in text and "93 GFLOP/s" not in text  # the hand-typed figures are gone


def test_changed_numbers_change_the_sentences():
    speed = load_benchmark("speed")
    results = _json("speed.json")
    goals = speed.render_goals(results)
    assert "with attention at its slowest size (dim 100) is 15.1 s (single run), above the target of 5.00 s" in goals
    assert "with the plain sum at its slowest size (dim 100) is 0.234 s (single run), below" in goals
    changed = copy.deepcopy(results)
    for row in changed["tables"]["predict"]["records"]:
        row["s"] = min(row["s"], 4.0)
    assert "above the target of 5.00 s" not in speed.render_goals(changed)

    floor = [line for line in goals.splitlines() if "multiples of its arithmetic floor" in line]
    assert len(floor) == 2 and all(line.endswith("the goal is missed.") for line in floor)  # dims 20 and 100
    for row in changed["tables"]["step"]["records"]:
        if row["path"] == speed.MRL:
            row["x floor"] = 2.5
    floor = [line for line in speed.render_goals(changed).splitlines() if "arithmetic floor" in line]
    assert all(line.endswith("the goal is met.") for line in floor)

    step = speed.render_step(results)
    assert "is better than the naive dense product" in step
    for row in changed["tables"]["step"]["records"]:
        if row["path"] == speed.DENSE:
            row["ms/step"] = 0.5
    assert "the naive dense product is better than mrl's step" in speed.render_step(changed)

    threads = speed.render_threads(results)
    assert "one thread is better than two threads" in threads
    for row in changed["tables"]["step"]["threads"]["records"]:
        row["ms/step"] = 5.0 if row["threads"] == 1 else 3.0
    assert "two threads is better than one thread" in speed.render_threads(changed)


def test_test_suite_time_is_stated_only_when_filled():
    timings = load_benchmark("timings")
    results = _json("timings.json")
    assert timings.TEST_SUITE in results
    empty = copy.deepcopy(results)
    empty[timings.TEST_SUITE] = None
    assert "**Tests**" not in timings.render_timings(empty) and "**Main job**" in timings.render_timings(empty)
    empty[timings.TEST_SUITE] = {"passed": 1234, "skipped": 5, "seconds": 725.0, "command": "CI=true bash .ci/run",
                                 "date": "2026-12-05", "cores": 2}
    assert "1,234 passed, 5 skipped in 12 min 05 s" in timings.render_timings(empty)
    empty["main_job"]["steps"][0]["wall_s"] += 60
    assert timings.render_timings(empty) != timings.render_timings({**empty, "main_job": results["main_job"]})


def test_a_partial_result_file_renders_and_says_what_is_missing():
    speed, timings = load_benchmark("speed"), load_benchmark("timings")
    results = _json("speed.json")
    partial = {**results, "tables": {"step": results["tables"]["step"]}}  # a run with --only step
    assert "Not in this result file" in speed.render_cost(partial)
    assert "with the plain sum" not in speed.render_goals(partial) and "dense product" in speed.render_goals(partial)
    assert "not timed" in timings.render_timings({timings.TEST_SUITE: None})
