"""Per-principal rate limits, and key rotation: old tokens, checkpoints and bundles stay verifiable."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from tests.conftest import TEST_SECRET, TEST_SIGNING_KEY, Tokens, submission
from tracing.api.app import create_app
from tracing.audit.bundle import verify_bundle
from tracing.audit.log import create_checkpoint, verify_everything
from tracing.audit.signing import Signer, generate_private_pem, trusted_keys
from tracing.config import Settings
from tracing.db import create_engine, create_sessionmaker


async def _client_for(settings: Settings) -> tuple[FastAPI, httpx.AsyncClient]:
    app = create_app(settings)
    return app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_rate_limit_is_per_principal_with_retry_after(settings: Settings, tokens: Tokens) -> None:
    app, client = await _client_for(settings.model_copy(update={"rate_limit_per_minute": 5}))
    async with app.router.lifespan_context(app), client:
        statuses = [
            (await client.get("/v1/trace-requests", headers=tokens.investigator)).status_code
            for _ in range(6)
        ]
        assert statuses == [200] * 5 + [429]
        limited = await client.get("/v1/trace-requests", headers=tokens.investigator)
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        other = await client.get("/v1/trace-requests", headers=tokens.ncp("NE"))
        assert other.status_code == 200


async def test_previous_jwt_secret_is_accepted_during_rotation(settings: Settings) -> None:
    rotated = settings.model_copy(
        update={"jwt_secret": "new-secret-" * 4, "jwt_previous_secret": TEST_SECRET}
    )
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"sub": "s", "agency": "NE-PJ", "country": "NE", "roles": ["investigator"],
              "exp": now + 60, "iss": "tracing-dev", "aud": "tracing"}  # fmt: skip
    app, client = await _client_for(rotated)
    async with app.router.lifespan_context(app), client:
        for secret, expected in ((TEST_SECRET, 200), ("new-secret-" * 4, 200), ("third-secret-" * 4, 401)):
            token = jwt.encode(claims, secret, algorithm="HS256")
            response = await client.get("/v1/trace-requests", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == expected
        future = jwt.encode({**claims, "nbf": now + 3600}, TEST_SECRET, algorithm="HS256")
        not_yet = await client.get("/v1/trace-requests", headers={"Authorization": f"Bearer {future}"})
        assert not_yet.status_code == 401


async def test_checkpoints_and_bundles_of_a_rotated_key_still_verify(
    settings: Settings, tokens: Tokens, client: httpx.AsyncClient, world: None, tmp_path
) -> None:
    created = await client.post("/v1/trace-requests", json=submission(), headers=tokens.investigator)
    request_id = created.json()["id"]
    old_bundle = (
        await client.get(f"/v1/trace-requests/{request_id}/audit/bundle", headers=tokens.investigator)
    ).text
    engine = create_engine(settings.database_url)
    old = Signer.from_private_pem(TEST_SIGNING_KEY)
    async with create_sessionmaker(engine)() as session:
        await create_checkpoint(session, old)

    previous = tmp_path / "previous-keys.pem"
    previous.write_text(old.public_pem)
    new = Signer.from_private_pem(generate_private_pem())
    rotated = settings.model_copy(update={"signing_previous_public_keys_file": str(previous)})
    keys = trusted_keys(rotated, new)
    assert keys.startswith(new.public_pem)
    try:
        async with create_sessionmaker(engine)() as session:
            assert (await verify_everything(session, keys)).valid
            assert not (await verify_everything(session, new.public_pem)).valid
            await create_checkpoint(session, new)
            assert (await verify_everything(session, keys)).valid
    finally:
        await engine.dispose()
    assert verify_bundle(old_bundle, keys)[0] == []
    problems, _ = verify_bundle(
        old_bundle, Signer.from_private_pem(generate_private_pem()).public_pem + new.public_pem
    )
    assert problems and "not among the given keys" in problems[0]


@pytest.mark.parametrize("limit", [0])
async def test_rate_limit_can_be_turned_off(settings: Settings, tokens: Tokens, limit: int) -> None:
    app, client = await _client_for(settings.model_copy(update={"rate_limit_per_minute": limit}))
    async with app.router.lifespan_context(app), client:
        for _ in range(20):
            assert (await client.get("/v1/trace-requests", headers=tokens.investigator)).status_code == 200
