"""A trace as text: children under their parent in the order they started, an app's spans told from its sidecar's."""

from typing import Any

from devstack.zipkin import span_tree


def _span(span_id: str, parent: str | None, at: int, name: str, service: str, sidecar: bool = False) -> dict[str, Any]:
    span: dict[str, Any] = {
        "id": span_id,
        "timestamp": at,
        "duration": 1000,
        "name": name,
        "localEndpoint": {"serviceName": service},
        "tags": {"otel.scope.name": "dapr-diagnostics" if sidecar else "sidecart_kit"},
    }
    if parent is not None:
        span["parentId"] = parent
    return span


def test_a_trace_is_printed_as_a_tree_in_start_order() -> None:
    spans = [
        _span("c", "a", 3_000, "saga charge_payment", "orders"),
        _span("a", None, 1_000, "POST /users/{user_id}/orders", "orders"),
        _span("b", "a", 2_000, "saga reserve_stock", "orders"),
        _span("d", "b", 2_500, "CallLocal/inventory/reservations", "inventory", sidecar=True),
        _span("e", "gone", 4_000, "pubsub/orders", "notifications", sidecar=True),  # its parent was not sampled here
    ]

    lines = [line.split("ms  ", 2)[-1] for line in span_tree(spans)]

    assert lines == [
        "orders: POST /users/{user_id}/orders",
        "  orders: saga reserve_stock",
        "    inventory (sidecar): CallLocal/inventory/reservations",
        "  orders: saga charge_payment",
        "notifications (sidecar): pubsub/orders",
    ]
    assert span_tree(spans)[0].startswith("      0.0 ms      1.0 ms")
