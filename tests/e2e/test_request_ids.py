"""One request id per request, end to end: the id a client sends (when it is a plain token) or the one the gateway
makes instead is the one in the response header, in the error body, and on every log line of every app the request
passes through."""

import functools
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.platform_run import Platform
from tests.e2e.journeys import bearer, eventually, log_in, sign_up

pytestmark = pytest.mark.e2e

REQUEST_ID = "X-Request-ID"
KEPT = ["a/b+c=", "0af7651916cd43dd8448eb211c80319c"]
REPLACED = ["x" * 200, "tab\there", "two words"]


async def read_log(platform: Platform, marks: dict[Path, int], app_id: str) -> list[dict[str, Any]]:
    return app_log_lines(platform, marks, app_id)


def app_log_lines(platform: Platform, marks: dict[Path, int], app_id: str) -> list[dict[str, Any]]:
    """The JSON lines `app_id`'s process logged since `marks` (dapr run prefixes each with "== APP - <id> == ")."""
    lines: list[dict[str, Any]] = []
    for path in platform.log_files():
        if not (path.name.startswith(f"{app_id}_app_") or path.name == f"{app_id}-app-restarted.log"):
            continue
        with path.open("rb") as file:
            file.seek(marks.get(path, 0))
            text = file.read().decode(errors="replace")
        for line in text.splitlines():
            start = line.find("{")
            if start >= 0:
                try:
                    lines.append(json.loads(line[start:]))
                except ValueError:
                    continue
    return lines


async def assert_one_id(
    platform: Platform, marks: dict[Path, int], response: httpx.Response, sent: str, apps: list[str], path: str
) -> None:
    answered = response.headers[REQUEST_ID]
    if sent in KEPT:
        assert answered == sent
    else:
        assert answered != sent
    if response.status_code >= 400:
        assert response.json()["error"]["request_id"] == answered, response.text
    for app_id in apps:

        def access_logged(lines: list[dict[str, Any]]) -> bool:
            return any(line.get("event") == "request" and line.get("request_id") == answered for line in lines)

        # An app's access-log line follows its answer, and reaches the log file through dapr run's relay.
        lines = await eventually(functools.partial(read_log, platform, marks, app_id), access_logged, within=10)
        assert access_logged(lines), f"{app_id} logged no line with {answered}"
        strays = [
            line
            for line in lines
            if line.get("event") == "request" and path in str(line.get("path")) and line.get("request_id") != answered
        ]
        assert strays == [], f"{app_id} logged this request under another id: {strays}"


@pytest.mark.parametrize("sent", KEPT + REPLACED)
async def test_one_id_through_the_gateway_to_users(platform: Platform, gateway: httpx.AsyncClient, sent: str) -> None:
    user = await sign_up(gateway)
    token = await log_in(gateway, user)

    marks = platform.log_marks()
    profile = await gateway.get("/api/v1/users/me", headers={**bearer(token), REQUEST_ID: sent})
    assert profile.status_code == 200, profile.text
    await assert_one_id(platform, marks, profile, sent, ["gateway", "users"], f"/users/{user.id}")

    marks = platform.log_marks()
    refused = await gateway.post(
        "/api/v1/auth/token", json={"email": user.email, "password": "wrong"}, headers={REQUEST_ID: sent}
    )
    assert refused.status_code == 401, refused.text
    await assert_one_id(platform, marks, refused, sent, ["gateway", "users"], "/auth/token")


@pytest.mark.parametrize("sent", KEPT + REPLACED)
async def test_one_id_through_the_gateway_to_orders(platform: Platform, gateway: httpx.AsyncClient, sent: str) -> None:
    token = await log_in(gateway, await sign_up(gateway))
    headers = {**bearer(token), REQUEST_ID: sent}

    marks = platform.log_marks()
    unknown = await gateway.get(f"/api/v1/orders/{uuid.uuid4()}", headers=headers)
    assert unknown.status_code == 404, unknown.text
    await assert_one_id(platform, marks, unknown, sent, ["gateway", "orders"], "/orders/")

    marks = platform.log_marks()
    listed = await gateway.get("/api/v1/orders", headers=headers)
    assert listed.status_code == 200, listed.text
    await assert_one_id(platform, marks, listed, sent, ["gateway", "orders"], "/orders")
