"""`make rotate-keys`: a new JWT signing key without logging anyone out.

users signs with the current key and publishes three in its JWKS: the current one, the next one (so verifiers hold it
before it signs) and the previous one (so the tokens it signed verify until they expire). A rotation shifts the three
in the local secret store: previous <- current, current <- next, next <- a new key. Tokens then stay valid as long as
rotations are further apart than a token's lifetime (USERS_TOKEN_TTL_SECONDS, an hour by default).

users and its sidecar read the keys at start (the local file secret store loads its file once), so those two, and
nothing else, must restart to sign with the new key.
"""

import json
from pathlib import Path

from devstack.install import ensure_secrets, new_rsa_private_key_pem, write_secrets
from devstack.layout import Layout
from devstack.platform_run import Platform
from devstack.processes import argv_of, log, platform_part

CURRENT = "jwt-signing-key"
NEXT = "jwt-next-signing-key"
PREVIOUS = "jwt-previous-signing-key"
USERS = "users"


def rotate_signing_keys(layout: Layout) -> None:
    """Shifts the signing keys in the local secret store's file: previous <- current, current <- next, next <- new."""
    secrets_file = ensure_secrets(layout)
    values: dict[str, str] = json.loads(secrets_file.read_text())
    rotated = {**values, PREVIOUS: values[CURRENT], CURRENT: values[NEXT], NEXT: new_rsa_private_key_pem()}
    write_secrets(secrets_file, rotated)
    log(f"rotated the signing keys in {secrets_file.relative_to(layout.repo)}: previous <- current <- next <- new")


def users_running(layout: Layout) -> bool:
    """Whether users or its sidecar runs from this checkout (started by `make run` or by the tests); the same ports
    may be held by another checkout's platform, which reads another secrets file."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            serves = platform_part(argv_of(int(proc.name)))
            if serves is not None and serves[0] == USERS and (proc / "cwd").resolve() == layout.repo:
                return True
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return False


def restart_users(platform: Platform, timeout: float = 60) -> None:
    """Restarts users and its sidecar, so both read the keys again, and waits until users is ready. A planned
    restart, not a crash: the sidecar goes first and finishes what it consumed (the outbox's events among it)."""
    sidecar = platform.shut_down(USERS, "sidecar")
    app = platform.shut_down(USERS, "app")
    platform.restart(sidecar)
    platform.restart(app)
    platform.wait_until_ready(USERS, timeout)


def rotate(layout: Layout) -> None:
    """`python -m devstack rotate-keys`: rotates the keys, then says what must restart to use them."""
    rotate_signing_keys(layout)
    if users_running(layout):
        log(
            "users is running with the keys it read at start. Restart the platform to sign with the new key: stop "
            "`make run` (Ctrl-C) and start it again. Tokens issued before stay valid (their key is now published as "
            "the previous one) and nothing else needs a restart: the gateway fetches the new keys by itself."
        )
    else:
        log("users is not running: it signs with the new key when the platform next starts")
