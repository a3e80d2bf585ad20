"""The evidence signing key (ES256): loading or creating it, signing JWS, verifying offline.

In production the key comes from TRACING_SIGNING_KEY (a PEM private key) or an existing key file;
in development a key is generated on first use and kept in TRACING_SIGNING_KEY_FILE.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jws
from jose.exceptions import JOSEError

from tracing.config import Settings

ALGORITHM = "ES256"


class SigningKeyMissing(RuntimeError):
    pass


class SignatureInvalid(ValueError):
    pass


@dataclass(frozen=True)
class Signer:
    private_pem: str
    public_pem: str
    kid: str

    @classmethod
    def from_private_pem(cls, private_pem: str) -> Signer:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise SigningKeyMissing("the signing key must be an EC P-256 private key (ES256)")
        public_pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        return cls(private_pem=private_pem, public_pem=public_pem, kid=key_id(public_pem))

    def sign(self, payload: dict[str, Any]) -> str:
        return jws.sign(
            json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
            self.private_pem,
            headers={"kid": self.kid},
            algorithm=ALGORITHM,
        )


def key_id(public_pem: str) -> str:
    der = serialization.load_pem_public_key(public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")


def generate_private_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_signer(settings: Settings, *, create: bool = True) -> Signer:
    """The configured key; in development, one is generated and kept on first use when `create`."""
    if settings.signing_key:
        return Signer.from_private_pem(settings.signing_key)
    path = Path(settings.signing_key_file)
    if path.exists():
        return Signer.from_private_pem(path.read_text())
    if not create:
        raise SigningKeyMissing(
            f"no evidence signing key: TRACING_SIGNING_KEY is unset and {path} does not exist"
        )
    if settings.env == "production":
        raise SigningKeyMissing(
            "no evidence signing key: set TRACING_SIGNING_KEY (PEM, EC P-256) or provide"
            f" {path} when TRACING_ENV=production"
        )
    pem = generate_private_pem()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(pem)
    return Signer.from_private_pem(pem)


_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def keyring(public_pems: str) -> dict[str, str]:
    """Key id -> PEM for every public key in a PEM text (one key, or several after rotations)."""
    return {key_id(block): block + "\n" for block in _PEM_BLOCK.findall(public_pems)}


def trusted_keys(settings: Settings, signer: Signer) -> str:
    """The current public key and those of earlier signing keys, as one PEM text."""
    pems = signer.public_pem
    if settings.signing_previous_public_keys_file:
        pems += Path(settings.signing_previous_public_keys_file).read_text()
    return pems


def verify_jws(token: str, public_pems: str) -> dict[str, Any]:
    """The signed payload, or SignatureInvalid saying why not. `public_pems` may hold several keys;
    the one named by the token's `kid` is used."""
    try:
        header = jws.get_unverified_header(token)
    except JOSEError as exc:
        raise SignatureInvalid(f"not a JWS: {exc}") from exc
    if header.get("alg") != ALGORITHM:
        raise SignatureInvalid(f"unexpected algorithm {header.get('alg')!r}; only {ALGORITHM} is accepted")
    keys = keyring(public_pems)
    if not keys:
        raise SignatureInvalid("no public key given")
    public_pem = keys.get(header.get("kid", ""))
    if public_pem is None:
        if len(keys) > 1:
            raise SignatureInvalid(f"signed by key {header.get('kid')!r}, which is not among the given keys")
        (public_pem,) = keys.values()
    try:
        payload = jws.verify(token, public_pem, algorithms=[ALGORITHM])
    except JOSEError as exc:
        raise SignatureInvalid(f"signature does not verify with the given public key ({exc})") from exc
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise SignatureInvalid("signed payload is not JSON") from exc
