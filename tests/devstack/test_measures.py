"""The figures the benchmarks print."""

import math

from devstack.measures import lags_ms, percentile


def test_a_percentile_is_the_nearest_ranked_value_timed() -> None:
    timed = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(timed, 0.5) == 3.0
    assert percentile(timed, 0.99) == 5.0
    assert percentile(timed, 0.0) == 1.0


def test_nothing_timed_has_no_percentile() -> None:
    assert math.isnan(percentile([], 0.5))


def test_a_lag_is_how_long_the_done_total_took_to_reach_each_sent_total() -> None:
    sent = [(0.0, 100), (1.0, 200), (2.0, 300)]
    done = [(0.5, 50), (1.5, 150), (2.5, 250), (3.0, 250)]
    # 100 reached at 1.5 s, 200 at 2.5 s, 300 never.
    assert lags_ms(sent, done) == [1500.0, 1500.0]
