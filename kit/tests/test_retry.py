from sidecart_kit.retry import RetryPolicy


def test_delays_grow_with_full_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=10, backoff_seconds=0.01, backoff_max_seconds=0.05)
    for attempt in range(10):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= min(0.05, 0.01 * 2**attempt) for delay in delays)
    assert max(policy.delay(9) for _ in range(200)) > 0.025  # the cap is reached, not the doubling
