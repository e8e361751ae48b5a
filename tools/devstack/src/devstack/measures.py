"""What the benchmarks compute from what they timed."""

from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """The q-quantile (q from 0 to 1) by the nearest-rank rule; nan when nothing was timed."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
