"""Business metrics every service keeps the same way, beside the kit's HTTP metrics on the app's registry."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from sidecart_kit.errors import DomainErrors


@dataclass
class OperationEnding:
    """How the operation being counted ended when it raises nothing: set `outcome` to say more than success."""

    outcome: str


class OperationCounter:
    """`<service>_operations_total` by operation and outcome: how each operation a route answered ended, with its
    success outcome or, when it raised a domain error, the code of the error it is answered with (the service's
    `domain_errors`, as install_error_handlers answers it). Errors outside that table are not counted."""

    def __init__(
        self, service: str, registry: CollectorRegistry, description: str, domain_errors: DomainErrors
    ) -> None:
        self._operations = Counter(
            f"{service}_operations_total", description, ["operation", "outcome"], registry=registry
        )
        self._domain_errors = domain_errors

    @contextmanager
    def counted(self, operation: str, success: str = "ok") -> Iterator[OperationEnding]:
        ending = OperationEnding(success)
        try:
            yield ending
        except Exception as exc:
            code = self._error_code(exc)
            if code is not None:
                self._operations.labels(operation, code).inc()
            raise
        self._operations.labels(operation, ending.outcome).inc()

    def _error_code(self, exc: Exception) -> str | None:
        # The most specific type in the table, as Starlette picks the exception handler.
        for error_type in type(exc).__mro__:
            answer = self._domain_errors.get(error_type)
            if answer is not None:
                return answer(exc).code
        return None
