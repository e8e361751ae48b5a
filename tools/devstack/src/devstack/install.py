"""Installs what the stack needs and does not find: Debian packages, the Dapr runtime, the secrets and credentials."""

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.catalogue import Catalogue
from devstack.identity import ensure_app_tokens, ensure_trust_root, write_owner_only
from devstack.layout import Layout
from devstack.processes import log

# Debian bookworm's build of Redis; a point release may replace a pinned build, so an unavailable pin falls back
# to bookworm's current build of the same package (and says so) rather than leaving a fresh machine unable to start.
REDIS_PIN = "5:7.0.15-1~deb12u10"


def as_root(argv: list[str], stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Runs a command as root: directly when we are root, else through password-less sudo. Output is captured."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return subprocess.run([*sudo, *argv], input=stdin.encode(), env=env, capture_output=True, check=False)


def _apt_get(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for a concurrent apt/dpkg run (another profile's install) instead of failing on its lock.
    return as_root(["apt-get", "-o", "DPkg::Lock::Timeout=300", *args], env=env)


def ensure_debian_package(package: str, binary: str, pin: str | None = None) -> None:
    """Installs a Debian package (at `pin` if still offered) unless `binary` is already on PATH or a path."""
    if shutil.which(binary):
        return
    log(f"installing {package} {pin or ''} from Debian's packages (one time)")
    _apt_get("update", "-qq")
    result = _apt_get("install", "-y", "-qq", f"{package}={pin}" if pin else package)
    if result.returncode != 0 and pin:
        log(f"{package}={pin} is not offered any more; installing bookworm's current {package}")
        result = _apt_get("install", "-y", "-qq", package)
    if result.returncode != 0 or not shutil.which(binary):
        raise RuntimeError(f"could not install {package}:\n{result.stderr.decode(errors='replace')}")


def ensure_runtime(layout: Layout) -> None:
    """Builds daprd, placement, scheduler, sentry and the dapr CLI unless the pinned build is already there."""
    script = layout.repo / "deploy" / "runtime" / "build.sh"
    env = {**os.environ, "DAPR_RUNTIME_PATH": str(layout.runtime_path)}
    subprocess.run(["bash", str(script)], env=env, check=True)


def new_rsa_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# What the local secret store holds, and how to make each secret when it is missing. A fresh install has no previous
# signing key (jwt-previous-signing-key): the first rotation (`make rotate-keys`, devstack/keys.py) makes one.
LOCAL_SECRETS: dict[str, Callable[[], str]] = {
    "jwt-signing-key": new_rsa_private_key_pem,  # users signs JWTs with it
    "jwt-next-signing-key": new_rsa_private_key_pem,  # users publishes it ahead; it signs after the next rotation
    "ingest-api-keys": lambda: f"dev-{secrets.token_urlsafe(24)}",  # machine clients of POST /api/v1/events
}


def local_secrets_file(layout: Layout) -> Path:
    """The file the local secret store reads (components/*/secretstore.yaml)."""
    return layout.run_dir / "secrets" / "secrets.json"


def write_secrets(secrets_file: Path, values: dict[str, str]) -> None:
    """Replaces the secrets file in one step, owner-only (a sidecar starting meanwhile reads the old or the new)."""
    write_owner_only(secrets_file, json.dumps(values).encode())


def ensure_secrets(layout: Layout) -> Path:
    """The local secret store's file (.run/secrets/secrets.json), with every secret present; existing ones kept."""
    secrets_file = local_secrets_file(layout)
    current: dict[str, str] = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    missing = [name for name in LOCAL_SECRETS if name not in current]
    if not missing:
        return secrets_file
    log(f"generating {', '.join(missing)} in {secrets_file.relative_to(layout.repo)}")
    write_secrets(secrets_file, current | {name: LOCAL_SECRETS[name]() for name in missing})
    return secrets_file


def install_common(layout: Layout) -> None:
    """What every profile needs: the Dapr runtime, the local secrets, the mTLS trust root and each app's API tokens.
    Servers come with their profile."""
    ensure_runtime(layout)
    ensure_secrets(layout)
    ensure_trust_root(layout)
    ensure_app_tokens(layout, list(Catalogue.load(layout).apps))
