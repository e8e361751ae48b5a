"""The figures the benchmarks print."""

import math

from devstack.measures import percentile


def test_a_percentile_is_the_nearest_ranked_value_timed() -> None:
    timed = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(timed, 0.5) == 3.0
    assert percentile(timed, 0.99) == 5.0
    assert percentile(timed, 0.0) == 1.0


def test_nothing_timed_has_no_percentile() -> None:
    assert math.isnan(percentile([], 0.5))
