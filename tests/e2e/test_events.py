"""Events cross the real broker; an event delivered or published again is handled once."""

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.users import UserRegistered
from devstack.platform_run import Platform
from tests.e2e.journeys import bearer, eventually, log_in, sign_up

pytestmark = pytest.mark.e2e


async def sign_ups_found_handled(platform: Platform) -> float:
    """How many user.registered deliveries notifications found it had handled already (its events counter)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{platform.run_file.app('notifications').app_port}/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "notifications_events_total"
        and sample.labels == {"route": "/events/user-registered", "outcome": "already_handled"}
    )


async def test_an_event_redelivered_or_published_again_is_handled_once(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    user = await sign_up(gateway)
    token = await log_in(gateway, user)

    async def notices() -> list[dict[str, object]]:
        items: list[dict[str, object]] = (
            await gateway.get("/api/v1/users/me/notifications", headers=bearer(token))
        ).json()["items"]
        return items

    assert len(await eventually(notices, lambda found: len(found) >= 1)) == 1  # the outbox's welcome event
    handled_before = await sign_ups_found_handled(platform)

    data = UserRegistered(user_id=uuid.UUID(user.id), email=user.email, name=user.name, registered_at=datetime.now(UTC))
    # Published through users' sidecar: the topic's one publisher under the pubsub's publishing scopes.
    publish_url = f"{platform.sidecar_url('users')}/v1.0/publish/pubsub/{UserRegistered.TOPIC}"

    def envelope(event_id: str) -> dict[str, object]:
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": "e2e",
            "type": UserRegistered.TYPE,
            "datacontenttype": "application/json",
            "data": data.model_dump(mode="json"),
        }

    # The same sign-up published twice more, each time under a new CloudEvent id, as a retried or replayed
    # publication would be. (One CloudEvent id sent twice is not a test every broker lets through: JetStream drops a
    # message whose id it saw within its duplicate window.)
    async with httpx.AsyncClient(timeout=5, headers=platform.sidecar_headers("users")) as sidecar:
        for _ in range(2):
            published = await sidecar.post(
                publish_url,
                json=envelope(f"e2e-{uuid.uuid4()}"),
                headers={"content-type": "application/cloudevents+json"},
            )
            assert published.status_code == 204, published.text

    # Both were delivered and found handled already: the welcome stays the one notice.
    handled = await eventually(lambda: sign_ups_found_handled(platform), lambda found: found >= handled_before + 2)
    assert handled >= handled_before + 2
    assert len(await notices()) == 1
