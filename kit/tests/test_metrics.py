"""Operations counted by how they ended: their outcome, or the code their domain error is answered with."""

import pytest
from prometheus_client import CollectorRegistry

from sidecart_kit.errors import ApiError, DomainErrors
from sidecart_kit.metrics import OperationCounter
from sidecart_kit.state import ContentionError, StoreUnavailableError


class RefusedError(Exception):
    pass


class OutOfStockError(RefusedError):
    pass


def _refusal(exc: Exception) -> ApiError:
    if isinstance(exc, OutOfStockError):
        return ApiError(409, "out_of_stock", "Not enough stock.")
    return ApiError(409, "conflict", str(exc))


DOMAIN_ERRORS: DomainErrors = {
    RefusedError: _refusal,
    StoreUnavailableError: lambda exc: ApiError(503, "unavailable", "Retry."),
}


def _counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["operation"], sample.labels["outcome"]): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "svc_operations_total"
    }


def test_operations_are_counted_by_outcome_or_by_the_code_of_their_error() -> None:
    registry = CollectorRegistry()
    counter = OperationCounter("svc", registry, "Operations.", DOMAIN_ERRORS)
    with counter.counted("reserve", "reserved"):
        pass
    with counter.counted("refund") as ending:
        ending.outcome = "voided"
    with counter.counted("charge"):
        pass
    for error in (OutOfStockError(), RefusedError("no"), ContentionError("busy"), ValueError("a bug")):
        with pytest.raises(type(error)), counter.counted("reserve", "reserved"):
            raise error
    assert _counts(registry) == {
        ("reserve", "reserved"): 1.0,
        ("refund", "voided"): 1.0,
        ("charge", "ok"): 1.0,
        ("reserve", "out_of_stock"): 1.0,
        ("reserve", "conflict"): 1.0,
        ("reserve", "unavailable"): 1.0,  # ContentionError is a StoreUnavailableError; a bug is not counted
    }
