import math

import pytest

from mrl.wording import BETTER, TIE, WORSE, Score, best_of, compare, format_number


def test_a_changed_number_changes_the_sentence():
    worse = compare(0.387, 0.342, "mrl", "LightGBM", "eval MAE", "log10")
    assert worse.verdict == WORSE and worse.relation == "above"
    assert "LightGBM is better than mrl by 0.045 log10 (13 %)" in worse.sentence
    assert "0.387 log10 (single run)" in worse.sentence
    better = compare(0.300, 0.342, "mrl", "LightGBM", "eval MAE", "log10")
    assert better.verdict == BETTER and better.relation == "below"
    assert "mrl is better than LightGBM by 0.042 log10 (12 %)" in better.sentence
    assert better.sentence != worse.sentence


def test_spread_over_seeds_makes_a_tie_and_is_named():
    ours = Score.of([0.40, 0.44, 0.36])
    assert ours.n == 3 and math.isclose(ours.sd, 0.04)
    c = compare(ours, Score.of([0.39, 0.41]), "mrl", "ridge", "eval MAE")
    assert c.verdict == TIE and c.relation == "within the spread of"
    assert "mean ± SD over 3 seeds" in c.sentence and "within the spread" in c.sentence
    assert compare(Score.of([0.50, 0.51, 0.52]), 0.40, "mrl", "ridge").verdict == WORSE


def test_higher_is_better_for_scores_like_hit_rates():
    c = compare(0.57, 0.76, "design", "the nearest training formula", "hit rate", lower_is_better=False)
    assert c.verdict == WORSE and "the nearest training formula is better than design" in c.sentence


def test_equal_at_the_shown_digits_is_a_tie_and_nan_is_not_comparable():
    assert compare(0.3421, 0.3424, "a", "b").verdict == TIE
    assert compare(float("nan"), 1.0, "a", "b").relation == "not comparable with"


@pytest.mark.parametrize("value, text", [(4700.4, "4,700"), (0.34217, "0.342"), (5.8e9, "5,800,000,000"),
                                         (0.000123456, "0.000123"), (0, "0"), (float("nan"), "n/a")])
def test_numbers_have_three_digits_and_never_e_notation(value, text):
    assert format_number(value) == text


def test_best_of_ignores_nan():
    assert best_of({"mean": 1.0, "ridge": 0.5, "bad": float("nan")}) == "ridge"
    assert best_of({"a": 0.2, "b": 0.9}, lower_is_better=False) == "b"


def test_no_relative_share_of_a_zero_baseline():
    from mrl.wording import compare

    sentence = compare(59.0, 0.0, "design", "the constrained nearest formula", what="hit rate", unit="%",
                       lower_is_better=False).sentence
    assert "inf" not in sentence and "better than the constrained nearest formula by 59" in sentence
