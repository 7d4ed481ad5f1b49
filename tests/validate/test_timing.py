"""Timing statistics and the repeat-until-budget rule."""
import statistics

from attnsim.validate.timing import MIN_REPEATS, measure, summarise


def test_summarise_median_iqr_min():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0]
    s = summarise(samples)
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    assert (s.median_s, s.iqr_s, s.min_s, s.repeats) == (3.0, q3 - q1, 1.0, 5)
    assert q3 - q1 == 2.0  # inclusive quartiles of 1..5 are 2 and 4


def test_measure_stops_at_the_budget_but_not_before_min_repeats():
    calls = []
    stats = measure(lambda: calls.append(1), budget_s=0.0)
    assert stats.repeats == MIN_REPEATS and len(calls) == MIN_REPEATS + 3  # + warm-up calls
    stats = measure(lambda: None, budget_s=10.0, max_repeats=50)
    assert stats.repeats == 50
