"""What proves who is who on one machine, made once by setup under .run/secrets/ (git-ignored, owner-only):

- the trust root of the platform's mTLS: a root CA and an issuer CA signed by it, in the files Dapr's sentry reads
  (ca.crt, issuer.crt, issuer.key); every daprd trusts the root (DAPR_TRUST_ANCHORS) and gets its SPIFFE
  certificate from sentry, which signs with the issuer;
- one pair of API tokens per app: DAPR_API_TOKEN (the app proves itself to its sidecar) and APP_API_TOKEN (the
  sidecar proves itself to its app), as Dapr defines them. Our daprd build reads its app's pair from
  `<tokens dir>/<app id>.json` (SIDECART_TOKENS_DIR); the app gets the same pair in its environment.
"""

import datetime
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.layout import Layout
from devstack.processes import log

ROOT_VALIDITY = datetime.timedelta(days=365)
TOKENS_DIR_VARIABLE = "SIDECART_TOKENS_DIR"


@dataclass(frozen=True)
class TrustRoot:
    folder: Path

    @property
    def root_certificate(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def issuer_certificate(self) -> Path:
        return self.folder / "issuer.crt"

    @property
    def issuer_key(self) -> Path:
        return self.folder / "issuer.key"

    def exists(self) -> bool:
        return all(p.exists() for p in (self.root_certificate, self.issuer_certificate, self.issuer_key))


def trust_root(layout: Layout) -> TrustRoot:
    return TrustRoot(layout.run_dir / "secrets" / "trust")


def tokens_dir(layout: Layout) -> Path:
    return layout.run_dir / "secrets" / "tokens"


def write_owner_only(path: Path, data: bytes) -> None:
    """Replaces `path` in one step, owner-only from its first byte (its folder too): a reader meanwhile (a sidecar
    starting, say) sees the old file or the new one, never half of one, and nobody else ever sees either."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.with_name(f".{path.name}.new")
    staging.unlink(missing_ok=True)
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(staging, path)


def _ca_certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sidecart"), x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + ROOT_VALIDITY)
        # The issuer signs workload certificates only, so it may not sign another CA below itself.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(signer, hashes.SHA256())
    )


def ensure_trust_root(layout: Layout) -> TrustRoot:
    """The mTLS trust root, made (ECDSA P-256, valid a year) unless it is already there."""
    root = trust_root(layout)
    if root.exists():
        return root
    log(f"generating the mTLS trust root in {root.folder.relative_to(layout.repo)}")
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_certificate = _ca_certificate("sidecart root", root_key, None, root_key)
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuer_certificate = _ca_certificate("sidecart issuer", issuer_key, root_certificate, root_key)
    pem = serialization.Encoding.PEM
    write_owner_only(root.root_certificate, root_certificate.public_bytes(pem))
    write_owner_only(root.issuer_certificate, issuer_certificate.public_bytes(pem))
    write_owner_only(
        root.issuer_key,
        issuer_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    # The root's key signs nothing after this: rotating means a new root, kept nowhere it could leak from.
    return root


@dataclass(frozen=True)
class AppTokens:
    dapr_api_token: str
    app_api_token: str

    def environment(self) -> dict[str, str]:
        return {"DAPR_API_TOKEN": self.dapr_api_token, "APP_API_TOKEN": self.app_api_token}


def ensure_app_tokens(layout: Layout, app_ids: list[str]) -> dict[str, AppTokens]:
    """Each app's token pair, made unless already there; existing ones are kept."""
    folder = tokens_dir(layout)
    made = []
    tokens = {}
    for app_id in app_ids:
        path = folder / f"{app_id}.json"
        if not path.exists():
            pair = {"DAPR_API_TOKEN": secrets.token_urlsafe(32), "APP_API_TOKEN": secrets.token_urlsafe(32)}
            write_owner_only(path, json.dumps(pair).encode())
            made.append(app_id)
        stored = json.loads(path.read_text())
        tokens[app_id] = AppTokens(stored["DAPR_API_TOKEN"], stored["APP_API_TOKEN"])
    if made:
        log(f"generating API tokens for {', '.join(made)} in {folder.relative_to(layout.repo)}")
    return tokens
