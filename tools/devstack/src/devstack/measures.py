"""What the benchmarks compute from what they timed."""

from collections.abc import Iterable, Sequence


def percentile(values: Iterable[float], q: float) -> float:
    """The q-quantile (q from 0 to 1) by the nearest-rank rule; nan when nothing was timed."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def lags_ms(sent: Sequence[tuple[float, int]], done: Sequence[tuple[float, int]]) -> list[float]:
    """Two running totals sampled over time, (seconds, how many so far): for each sample of `sent`, how long until
    `done` reached it, in ms (samples `done` never reached are left out)."""
    lags = []
    for sent_at, total in sent:
        done_at = next((at for at, reached in done if reached >= total), None)
        if done_at is not None:
            lags.append(max(0.0, done_at - sent_at) * 1000)
    return lags
