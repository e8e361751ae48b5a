"""Events cross the real broker; a redelivered event is handled once."""

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from contracts.users import UserRegistered
from devstack.platform_run import Platform
from tests.e2e.journeys import bearer, eventually, log_in, sign_up

pytestmark = pytest.mark.e2e


async def test_a_redelivered_event_is_handled_once(platform: Platform, gateway: httpx.AsyncClient) -> None:
    user = await sign_up(gateway)
    token = await log_in(gateway, user)

    async def notices() -> list[dict[str, object]]:
        items: list[dict[str, object]] = (
            await gateway.get("/api/v1/users/me/notifications", headers=bearer(token))
        ).json()["items"]
        return items

    assert len(await eventually(notices, lambda found: len(found) >= 1)) == 1  # the outbox's welcome event

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

    async with httpx.AsyncClient(timeout=5, headers=platform.sidecar_headers("users")) as sidecar:
        duplicate_id, sentinel_id = f"e2e-{uuid.uuid4()}", f"e2e-{uuid.uuid4()}"
        for event_id in (duplicate_id, duplicate_id, sentinel_id):
            published = await sidecar.post(
                publish_url, json=envelope(event_id), headers={"content-type": "application/cloudevents+json"}
            )
            assert published.status_code == 204, published.text

    # The welcome event, the duplicated one once, and the sentinel: three, never four.
    items = await eventually(notices, lambda found: len(found) >= 3)
    assert sorted(str(item["event_id"]) for item in items if str(item["event_id"]).startswith("e2e-")) == sorted(
        [duplicate_id, sentinel_id]
    )
    assert len(items) == 3
