"""The interactions page is worded from its result file: a changed number changes the sentence."""
import copy
import json
from pathlib import Path

from conftest import load_benchmark

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "interaction_lab.json"


def test_lab_sentences_follow_the_numbers():
    bench = load_benchmark("interaction")
    result = json.loads(RESULT.read_text())
    text = bench.render_lab(result)
    assert "transformer, pooling" in text and "plain sum" in text
    better = copy.deepcopy(result)
    for row in better["lab"]["summary"]:
        if row["model"] == "transformer, pooling":
            row["eval MAE log10 mean"] = 0.05
    changed = bench.render_lab(better)
    line = next(x for x in changed.splitlines() if x.startswith("- The eval MAE (log10) of transformer, pooling"))
    assert "below that of the plain sum" in line and "transformer, pooling is better than the plain sum" in line
    assert line not in text


def test_matbench_section_names_each_comparison():
    bench = load_benchmark("interaction")
    tables = bench.load_matbench()
    text = bench.render_matbench(tables)
    if not tables:
        assert "No Matbench transformer rows" in text
    else:
        assert "mrl transformer" in text and "Time per fold" in text
