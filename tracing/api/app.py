"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tracing import __version__
from tracing.api import problems
from tracing.api.metrics import Metrics
from tracing.api.middleware import BodyLimit, RefuseNulInUrl, RequestContext
from tracing.api.ratelimit import PrincipalRateLimit
from tracing.api.routes import (
    agencies,
    audit,
    cross_checks,
    dashboard,
    events,
    health,
    operations,
    registries,
    stats,
    trace_requests,
)
from tracing.audit.log import create_checkpoint
from tracing.audit.signing import Signer, load_signer
from tracing.config import Settings, get_settings
from tracing.db import create_engine, create_sessionmaker, current_revision, head_revision
from tracing.logs import configure as configure_logging
from tracing.markings.service import CrossCheckRunner
from tracing.models.types import utcnow
from tracing.notify.addresses import AddressPolicy
from tracing.notify.delivery import DeliveryWorker
from tracing.security import TokenVerifier
from tracing.workflow.deadlines import DeadlinePolicy


class DatabaseNotMigrated(RuntimeError):
    pass


log = structlog.get_logger("tracing.audit")


async def sign_checkpoints_periodically(
    sessions: async_sessionmaker[AsyncSession], signer: Signer, interval_seconds: int
) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            async with sessions() as session:
                checkpoint = await create_checkpoint(session, signer)
            log.info("checkpoint_signed", checkpoint=checkpoint.id, size=checkpoint.size)
        except Exception as exc:  # keep signing later checkpoints whatever went wrong with this one
            log.warning("checkpoint_failed", error=exc.__class__.__name__)


def _operation_id(route: APIRoute) -> str:
    return route.name


async def check_migrated(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        current, head = await current_revision(engine), head_revision()
    finally:
        await engine.dispose()
    if current != head:
        raise DatabaseNotMigrated(
            f"the database is at migration {current or 'none'}, the code needs {head};"
            " run `tracing migrate` first"
        )


def create_app(settings: Settings | None = None, *, check_migrations: bool = True) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if check_migrations:
            await check_migrated(settings)
        app.state.signer = load_signer(settings)
        engine = create_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        background: list[asyncio.Task[None]] = []
        if settings.checkpoint_interval_seconds > 0:
            background.append(
                asyncio.create_task(
                    sign_checkpoints_periodically(
                        app.state.sessionmaker, app.state.signer, settings.checkpoint_interval_seconds
                    )
                )
            )
        app.state.cross_checks = CrossCheckRunner(
            app.state.sessionmaker,
            poll_seconds=settings.cross_check_poll_seconds,
            retry_base_seconds=settings.cross_check_retry_seconds,
        )
        if settings.cross_check_poll_seconds > 0:
            background.append(asyncio.create_task(app.state.cross_checks.serve()))
        worker = None
        if settings.background_worker:
            worker = DeliveryWorker(app.state.sessionmaker, settings, clock=lambda: app.state.clock())
            background.append(asyncio.create_task(worker.run()))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if worker is not None:
                await worker.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Firearms tracing service",
        version=__version__,
        description=(
            "Trace requests for seized, found or surrendered firearms, forwarded and answered"
            " between national contact points. Errors are application/problem+json (RFC 9457)."
        ),
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    app.state.rate_limit = PrincipalRateLimit(settings.rate_limit_per_minute)
    app.state.clock = utcnow
    app.state.metrics = Metrics()
    app.state.deadline_policy = DeadlinePolicy.from_settings(settings)
    app.state.address_policy = AddressPolicy.from_settings(settings)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(agencies.router)
    app.include_router(trace_requests.router)
    app.include_router(audit.router)
    app.include_router(operations.router)
    app.include_router(stats.router)
    app.include_router(dashboard.router)
    app.include_router(events.router)
    app.include_router(cross_checks.router)
    app.include_router(registries.router)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        overrides=((re.compile(r"^/v1/registries/[^/]+/records$"), settings.max_import_bytes),),
    )
    app.add_middleware(RefuseNulInUrl)
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    return app
