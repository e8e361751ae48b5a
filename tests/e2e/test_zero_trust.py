"""Nothing trusts the network: every caller proves who it is, and every app reaches only what the catalogue grants.

- Service invocation: the whole matrix of (caller, callee, operation) through the caller's own sidecar, as that
  app: what deploy/catalogue.yaml grants reaches the callee, everything else is refused by the callee's sidecar
  (403, Dapr's access policy), dotted and encoded spellings of allowed paths included.
- API tokens: a sidecar refuses any call without its own app's token; an app refuses any call without the token
  its sidecar presents (health probes excepted).
- mTLS: a sidecar's internal gRPC port speaks TLS only, with a SPIFFE certificate chained to the platform's root,
  and wants one back: plaintext and certificate-less clients get nothing.
- Secrets: each sidecar reads only the secrets its app is granted.

Requests are sent with http.client, which sends a path exactly as written (httpx would resolve `..` first).
"""

import http.client
import json
import socket
import ssl
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from cryptography import x509

from devstack.catalogue import Catalogue, Operation
from devstack.identity import trust_root
from devstack.install import LOCAL_SECRETS
from devstack.platform_run import Platform
from devstack.processes import listening_sockets

pytestmark = pytest.mark.e2e
Call = TypeVar("Call")

USER, ORDER, SKU = str(uuid.uuid4()), str(uuid.uuid4()), "ZT-PROBE-1"

# Every operation each app serves (ids made up; bodies are empty JSON objects, so nothing is changed).
SERVED: dict[str, list[tuple[str, str]]] = {
    "gateway": [("GET", "api/v1/products"), ("GET", "readyz")],
    "users": [("POST", "users"), ("POST", "auth/token"), ("GET", f"users/{USER}"), ("GET", ".well-known/jwks.json")],
    "notifications": [("GET", f"users/{USER}/notifications"), ("POST", "events/user-registered")],
    "inventory": [
        ("GET", "products"),
        ("GET", f"products/{SKU}"),
        ("PUT", f"admin/products/{SKU}"),
        ("GET", f"admin/products/{SKU}/stock"),
        ("POST", "reservations"),
        ("POST", f"reservations/{ORDER}/commit"),
        ("POST", f"reservations/{ORDER}/release"),
    ],
    "payments": [
        ("GET", f"wallets/{USER}"),
        ("POST", "charges"),
        ("POST", f"charges/{ORDER}/refund"),
        ("POST", "events/user-registered"),
    ],
    "orders": [
        ("POST", f"users/{USER}/orders"),
        ("GET", f"users/{USER}/orders"),
        ("GET", f"users/{USER}/orders/{ORDER}"),
    ],
    "ingest": [("POST", "events")],
    "analytics": [("GET", "reports/summary"), ("GET", "admin/dead-letters"), ("POST", "events/telemetry")],
}
# Spellings of a path that must land where the clean path lands: at an operation nobody outside may call.
FORBIDDEN_BEHIND_ALLOWED = {
    "users": ("users", "../dapr/subscribe"),
    "inventory": ("products", f"../admin/products/{SKU}/stock"),
    "payments": ("wallets", "../events/user-registered"),
    "orders": ("users", f"../../../admin/{USER}"),
    "analytics": ("reports", "../admin/dead-letters"),
    "notifications": ("users", "../events/user-registered"),
    "ingest": ("events", "../dapr/subscribe"),
}


def _granted(operations: tuple[Operation, ...], verb: str, path: str) -> bool:
    """Whether the catalogue grants `verb /path`: `*` is one segment, `**` any number of them."""
    for operation in operations:
        if operation.verb != verb:
            continue
        pattern = operation.path.lstrip("/")
        if pattern.endswith("/**"):
            if path.startswith(pattern[:-2]):
                return True
        elif pattern.endswith("/*") and path == pattern[:-2]:
            return True  # Dapr's `/x/*` matches `/x` itself too
        elif len(pattern.split("/")) == len(path.split("/")) and fnmatchcase(path, pattern):
            return True
    return False


def _send(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def _invoke(platform: Platform, caller: str, callee: str, verb: str, path: str) -> tuple[int, str]:
    body = b"{}" if verb in {"POST", "PUT"} else None
    headers = {**platform.sidecar_headers(caller), "content-type": "application/json"}
    port = platform.run_file.app(caller).dapr_http_port
    return _send(port, verb, f"/v1.0/invoke/{callee}/method/{path}", headers, body)


def _denied_by_policy(status: int, body: str) -> bool:
    return status == 403 and "access control policy has denied access" in body


def _all_at_once(outcome: Callable[[Call], str | None], calls: list[Call]) -> list[str | None]:
    """Every call at once: a denied call takes the caller's sidecar about 2.3 s, as its resiliency policy retries
    it (Dapr 1.18 retries a denial over HTTP invocation whatever the policy's status-code matching says)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(outcome, calls))


@pytest.fixture(scope="module")
def catalogue(platform: Platform) -> Catalogue:
    return Catalogue.load(platform.layout)


@pytest.mark.parametrize("caller", list(SERVED))
def test_a_caller_reaches_exactly_the_operations_the_catalogue_grants(
    platform: Platform, catalogue: Catalogue, caller: str
) -> None:
    calls = [(callee, verb, path) for callee, served in SERVED.items() if callee != caller for verb, path in served]

    def outcome(call: tuple[str, str, str]) -> str | None:
        callee, verb, path = call
        status, body = _invoke(platform, caller, callee, verb, path)
        allowed = _granted(catalogue.apps[caller].calls.get(callee, ()), verb, path)
        if allowed == _denied_by_policy(status, body):
            return f"{caller} -> {callee} {verb} /{path}: {status} {body[:160]} (granted: {allowed})"
        return None

    assert [wrong for wrong in _all_at_once(outcome, calls) if wrong] == []


@pytest.mark.parametrize("callee", list(FORBIDDEN_BEHIND_ALLOWED))
def test_dotted_and_encoded_spellings_of_an_allowed_path_are_refused(platform: Platform, callee: str) -> None:
    prefix, escape = FORBIDDEN_BEHIND_ALLOWED[callee]
    encoded = escape.replace("..", "%2e%2e")
    spellings = [
        f"{prefix}/{escape}",
        f"{prefix}/{encoded}",
        f"{prefix}/{escape.replace('/', '%2f')}",
        f"{prefix}/{encoded.replace('/', '%2F')}",
        f"{prefix}/./{escape}",
        f"{prefix}//{escape}",
        f"{prefix}/{escape.upper()}",
    ]

    # The gateway may call each of these callees; a spelling that climbs out of the allowed path must not work.
    def outcome(call: tuple[str, str]) -> str | None:
        verb, spelling = call
        status, body = _invoke(platform, "gateway", callee, verb, spelling)
        return (
            None if _denied_by_policy(status, body) or status == 400 else f"{verb} /{spelling}: {status} {body[:160]}"
        )

    calls = [(verb, spelling) for spelling in spellings for verb in ("GET", "POST")]
    assert [reached for reached in _all_at_once(outcome, calls) if reached] == []


@pytest.mark.parametrize("app_id", list(SERVED))
def test_a_sidecar_refuses_a_caller_without_its_apps_token(platform: Platform, app_id: str) -> None:
    port = platform.run_file.app(app_id).dapr_http_port
    other = next(a for a in SERVED if a != app_id)
    for headers in ({}, {"dapr-api-token": "wrong"}, platform.sidecar_headers(other)):
        for method, path in [
            ("GET", "/v1.0/metadata"),
            ("GET", f"/v1.0/state/{app_id}-store/probe"),
            ("POST", "/v1.0/publish/pubsub/orders"),
            ("GET", "/v1.0/invoke/inventory/method/products"),
            ("GET", "/v1.0/secrets/secretstore/jwt-signing-key"),
        ]:
            status, body = _send(port, method, path, headers, b"{}" if method == "POST" else None)
            assert status == 401, (app_id, headers.keys(), method, path, status, body)
    # The probe stays open (as the dapr CLI and Kubernetes call it), and the app's own token works.
    assert _send(port, "GET", "/v1.0/healthz", {})[0] == 204
    assert _send(port, "GET", "/v1.0/metadata", platform.sidecar_headers(app_id))[0] == 200


@pytest.mark.parametrize("app_id", [a for a in SERVED if a != "gateway"])
def test_an_app_refuses_a_caller_without_its_sidecars_token(platform: Platform, app_id: str) -> None:
    port = platform.run_file.app(app_id).app_port
    method, path = SERVED[app_id][0]
    for headers in ({}, {"dapr-api-token": "wrong"}, {"dapr-api-token": platform.tokens["gateway"].app_api_token}):
        status, body = _send(port, method, f"/{path}", headers, b"{}" if method == "POST" else None)
        assert status == 401, (app_id, headers.keys(), status, body)
    assert _send(port, "GET", "/healthz", {})[0] == 200
    own = {"dapr-api-token": platform.tokens[app_id].app_api_token}
    assert _send(port, method, f"/{path}", own, b"{}" if method == "POST" else None)[0] != 401


def _internal_grpc_port(platform: Platform, app_id: str) -> int:
    """The sidecar-to-sidecar port: the one daprd listens on that dapr.yaml does not name."""
    pid = platform.pid_of(app_id, "sidecar")
    ports = {s.port for s in listening_sockets([pid]) if s.protocol == "tcp"} - platform.run_file.app(app_id).ports
    assert len(ports) == 1, ports
    return ports.pop()


@pytest.mark.parametrize("app_id", ["inventory", "users"])
def test_the_internal_grpc_port_speaks_mtls_only(platform: Platform, app_id: str) -> None:
    port = _internal_grpc_port(platform, app_id)

    # Plaintext gRPC: the TLS server never answers it.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/dapr.proto.internals.v1.ServiceInvocation/CallLocal")
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", timeout=3)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    # TLS without a client certificate: the server shows a SPIFFE identity under the platform's root, then refuses.
    context = ssl.create_default_context(cafile=str(trust_root(platform.layout).root_certificate))
    context.check_hostname = False
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert f"spiffe://public/ns/default/{app_id}" in names.value.get_values_for_type(x509.UniformResourceIdentifier)
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _read_or_raise(tls)


def _read_or_raise(tls: ssl.SSLSocket) -> None:
    """The server's answer to a client without a certificate: an alert (SSLError) or a closed connection."""
    if not tls.recv(1024):
        raise ConnectionResetError("closed without an answer")


@pytest.mark.parametrize("app_id", list(SERVED))
def test_a_sidecar_reads_only_the_secrets_its_app_is_granted(
    platform: Platform, catalogue: Catalogue, app_id: str
) -> None:
    port = platform.run_file.app(app_id).dapr_http_port
    values = json.loads((platform.layout.run_dir / "secrets" / "secrets.json").read_text())
    for secret in LOCAL_SECRETS:
        status, body = _send(port, "GET", f"/v1.0/secrets/secretstore/{secret}", platform.sidecar_headers(app_id))
        if secret in catalogue.apps[app_id].secrets:
            assert status == 200, (app_id, secret, status)
            assert secret in json.loads(body)
        else:
            # Denied by the app's secret scopes, or the app's sidecar has no secret store at all.
            assert status in (403, 500), (app_id, secret, status, body)
            assert not any(value in body for value in values.values())


def test_the_platform_keeps_its_tokens_and_keys_owner_only(platform: Platform) -> None:
    secrets_dir = platform.layout.run_dir / "secrets"
    files = [p for p in Path(secrets_dir).rglob("*") if p.is_file()]
    assert files
    loose = [str(p) for p in files if p.stat().st_mode & 0o077]
    assert loose == []
