"""Bearer tokens: every malformed or untrustworthy token is a 401 problem, never a 500."""

from __future__ import annotations

import base64
import datetime as dt
import json

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt

from tests.conftest import TEST_SECRET, TEST_SIGNING_KEY, Tokens
from tracing.api.app import create_app
from tracing.config import Settings


def _claims(**overrides: object) -> dict:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {
        "sub": "inspector.moussa", "agency": "NE-PJ", "country": "NE", "roles": ["investigator"],
        "iat": now, "exp": now + 600, "iss": "tracing-dev", "aud": "tracing",
    }  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _unsigned(claims: dict) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


EXPIRED = {"exp": int(dt.datetime.now(dt.UTC).timestamp()) - 3600}
BAD_TOKENS = {
    "garbage": lambda: "not-a-jwt",
    "three_dots_of_garbage": lambda: "a.b.c",
    "expired": lambda: jwt.encode(_claims(**EXPIRED), TEST_SECRET, algorithm="HS256"),
    "wrong_audience": lambda: jwt.encode(_claims(aud="other"), TEST_SECRET, algorithm="HS256"),
    "wrong_issuer": lambda: jwt.encode(_claims(iss="evil"), TEST_SECRET, algorithm="HS256"),
    "no_exp": lambda: jwt.encode(_claims(exp=None), TEST_SECRET, algorithm="HS256"),
    "no_country": lambda: jwt.encode(_claims(country=None), TEST_SECRET, algorithm="HS256"),
    "unknown_country": lambda: jwt.encode(_claims(country="QQ"), TEST_SECRET, algorithm="HS256"),
    "roles_not_a_list": lambda: jwt.encode(_claims(roles="admin"), TEST_SECRET, algorithm="HS256"),
    "alg_none": lambda: _unsigned(_claims()),
    "wrong_secret": lambda: jwt.encode(_claims(), "another-secret-" * 4, algorithm="HS256"),
    "hs512_not_pinned": lambda: jwt.encode(_claims(), TEST_SECRET, algorithm="HS512"),
    "tampered_payload": lambda: _tamper(jwt.encode(_claims(), TEST_SECRET, algorithm="HS256")),
    "oversized": lambda: jwt.encode(_claims(pad="x" * 20_000), TEST_SECRET, algorithm="HS256"),
}


def _tamper(token: str) -> str:
    header, _payload, signature = token.split(".")
    return f"{header}.{_b64(_claims(roles=['investigator', 'admin']))}.{signature}"


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_token_is_401_problem(client: httpx.AsyncClient, kind: str) -> None:
    token = BAD_TOKENS[kind]()
    response = await client.get("/v1/trace-requests", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401


async def test_missing_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/trace-requests")
    assert response.status_code == 401
    assert response.json()["detail"] == "a bearer token is required"


async def test_valid_token_is_accepted(client: httpx.AsyncClient, tokens: Tokens) -> None:
    response = await client.get("/v1/trace-requests", headers=tokens.investigator)
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_wrong_role_is_403(client: httpx.AsyncClient, tokens: Tokens) -> None:
    response = await client.post(
        "/v1/agencies",
        json={"code": "X-1", "name": "x", "country": "NE", "kind": "contact_point"},
        headers=tokens.investigator,
    )
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]


@pytest.fixture
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def _get_with(settings: Settings, token: str) -> httpx.Response:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.get("/v1/trace-requests", headers={"Authorization": f"Bearer {token}"})


async def test_public_key_deployment_accepts_es256_and_refuses_hmac_forgeries(
    database_url: str, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    public_pem = (
        ec_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    private_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = Settings(
        database_url=database_url,
        jwt_public_key=public_pem,
        jwt_public_key_algorithm="ES256",
        signing_key=TEST_SIGNING_KEY,
    )
    good = jwt.encode(_claims(), private_pem, algorithm="ES256")
    assert (await _get_with(settings, good)).status_code == 200

    # The classic confusion attack: an HMAC token keyed with the public key itself.
    forged = jwt.encode(_claims(), "forged", algorithm="HS256")
    header, payload, _ = forged.split(".")
    import hashlib
    import hmac

    signature = hmac.new(public_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"
    assert (await _get_with(settings, forged)).status_code == 401
    assert (
        await _get_with(settings, jwt.encode(_claims(), TEST_SECRET, algorithm="HS256"))
    ).status_code == 401


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValueError, match="TRACING_JWT_SECRET"):
        Settings(env="production")
    assert Settings(env="production", jwt_secret="s" * 40).jwt_secret == "s" * 40


async def test_jwks_deployment_picks_the_key_by_kid_and_refuses_unknown_kids(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    from jose import jwk

    from tracing.security import TokenVerifier

    public_pem = (
        ec_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    private_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_jwk = {**jwk.construct(public_pem, "ES256").to_dict(), "kid": "idp-2026", "use": "sig"}
    fetches = []

    def identity_provider(request: httpx.Request) -> httpx.Response:
        fetches.append(request.url)
        return httpx.Response(200, json={"keys": [public_jwk]})

    settings = Settings(jwks_url="https://idp.test/jwks", jwt_public_key_algorithm="ES256")
    http = httpx.AsyncClient(transport=httpx.MockTransport(identity_provider))
    verifier = TokenVerifier(settings, http=http)
    good = jwt.encode(_claims(), private_pem, algorithm="ES256", headers={"kid": "idp-2026"})
    principal = await verifier.verify(good)
    assert (principal.agency, principal.country) == ("NE-PJ", "NE")
    await verifier.verify(good)
    assert len(fetches) == 1  # cached

    from tracing.errors import Unauthorized

    unknown = jwt.encode(_claims(), private_pem, algorithm="ES256", headers={"kid": "stolen"})
    with pytest.raises(Unauthorized, match="key id"):
        await verifier.verify(unknown)
    with pytest.raises(Unauthorized, match="not accepted"):
        await verifier.verify(jwt.encode(_claims(), TEST_SECRET, algorithm="HS256"))
    await http.aclose()


async def test_rejected_tokens_are_never_logged(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = [BAD_TOKENS[kind]() for kind in ("expired", "alg_none", "tampered_payload", "wrong_secret")]
    for token in tokens:
        response = await client.get("/v1/trace-requests", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    logged = capsys.readouterr().err
    assert '"status": 401' in logged
    for token in tokens:
        assert token not in logged
        assert token.split(".")[1] not in logged  # not even the claims
