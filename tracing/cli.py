"""The `tracing` command: serve, migrate, demo data, tokens, the webhook worker, the OpenAPI document."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tracing.config import get_settings

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def _migrate(args: argparse.Namespace) -> int:
    from tracing.db import upgrade

    upgrade(get_settings().database_url)
    print("database migrated to the latest revision")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tracing.api.app import create_app

    if not args.no_migrate:
        _migrate(args)
    settings = get_settings()
    if args.no_worker:
        settings = settings.model_copy(update={"background_worker": False})
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from tracing.api.app import DatabaseNotMigrated, check_migrated
    from tracing.logs import configure as configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        asyncio.run(check_migrated(settings))
    except DatabaseNotMigrated as exc:
        print(str(exc), file=sys.stderr)
        return 1
    try:
        asyncio.run(_run_worker(settings, once=args.once))
    except KeyboardInterrupt:
        pass
    return 0


async def _run_worker(settings, *, once: bool) -> None:  # noqa: ANN001 (Settings, imported lazily)
    import signal

    from tracing.db import create_engine, create_sessionmaker
    from tracing.notify.delivery import DeliveryWorker

    engine = create_engine(settings.database_url)
    worker = DeliveryWorker(create_sessionmaker(engine), settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if once:
            delivered = await worker.run_once()
            if worker.sweep_enabled:
                await worker.sweep()
            print(f"{delivered} deliveries attempted")
        else:
            await worker.run(stop)
    finally:
        await worker.aclose()
        await engine.dispose()


def _token(args: argparse.Namespace) -> int:
    from tracing.security import Role, issue_token

    unknown = [r for r in args.role if r not in Role.__members__]
    if unknown:
        print(f"unknown role(s): {', '.join(unknown)}; known: {', '.join(Role)}", file=sys.stderr)
        return 2
    token = issue_token(
        get_settings(),
        subject=args.sub,
        agency=args.agency,
        country=args.country,
        roles=args.role,
        ttl_seconds=args.ttl,
    )
    print(token)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from tracing.demo import load_demo

    summary = asyncio.run(load_demo(get_settings()))
    print(summary)
    return 0


async def _with_session(work):  # noqa: ANN001, ANN202 (a coroutine taking a session)
    from tracing.db import create_engine, create_sessionmaker

    engine = create_engine(get_settings().database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _audit_verify(args: argparse.Namespace) -> int:
    from tracing.audit.log import verify_everything
    from tracing.audit.signing import load_signer, trusted_keys

    settings = get_settings()
    public_pems = trusted_keys(settings, load_signer(settings, create=False))
    report = asyncio.run(_with_session(lambda session: verify_everything(session, public_pems)))
    for chain_id, verification in sorted(report.broken.items(), key=lambda item: str(item[0])):
        first = verification.first_invalid_seq
        print(f"BROKEN chain {chain_id}: first invalid entry {first}: {verification.reason}")
    for problem in report.checkpoint_problems:
        print(f"BROKEN {problem}")
    state = "all chains verify" if report.valid else "tampering detected"
    print(f"{state}: {report.chains} chains, {report.entries} entries checked")
    return 0 if report.valid else 1


def _audit_checkpoint(args: argparse.Namespace) -> int:
    from tracing.audit.log import create_checkpoint
    from tracing.audit.signing import load_signer

    signer = load_signer(get_settings())
    checkpoint = asyncio.run(_with_session(lambda session: create_checkpoint(session, signer)))
    print(f"checkpoint {checkpoint.id}: {checkpoint.size} chains, root {checkpoint.root}")
    return 0


def _audit_public_key(args: argparse.Namespace) -> int:
    from tracing.audit.signing import load_signer, trusted_keys

    settings = get_settings()
    print(trusted_keys(settings, load_signer(settings, create=False)), end="")
    return 0


def _audit_verify_bundle(args: argparse.Namespace) -> int:
    from tracing.audit.bundle import verify_bundle

    if args.public_key:
        key_path = Path(args.public_key)
        public_pem = key_path.read_text() if key_path.exists() else args.public_key
    else:
        from tracing.audit.signing import load_signer, trusted_keys

        settings = get_settings()
        public_pem = trusted_keys(settings, load_signer(settings, create=False))
    problems, payload = verify_bundle(Path(args.file).read_text(), public_pem)
    for problem in problems:
        print(f"INVALID {problem}")
    if problems:
        return 1
    assert payload is not None
    request = payload["trace_request"]
    print(
        f"bundle verifies: {request['reference']} ({request['state']}),"
        f" {len(payload['exchanges'])} exchanges, {len(payload['audit']['entries'])} audit entries,"
        f" checkpoint {'included' if payload.get('checkpoint') else 'none yet'}"
    )
    return 0


def _registry_import(args: argparse.Namespace) -> int:
    from tracing.errors import TracingError
    from tracing.markings.imports import ImportFormat
    from tracing.markings.registries import import_records

    path = Path(args.file)
    fmt = (
        ImportFormat(args.format)
        if args.format
        else (ImportFormat.jsonl if path.suffix.lower() in (".jsonl", ".ndjson") else ImportFormat.csv)
    )

    async def chunks():  # noqa: ANN202 (an async generator of the file's bytes)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, 1024 * 1024):
                yield chunk
        finally:
            handle.close()

    async def work(session):  # noqa: ANN001, ANN202
        return await import_records(
            session=session, registry_ref=args.registry, chunks=chunks(), fmt=fmt, encoding=args.encoding
        )

    try:
        report = asyncio.run(_with_session(work))
    except TracingError as exc:
        print(f"import refused: {exc.detail}", file=sys.stderr)
        return 2
    for error in report.errors:
        field = f" {error.field}:" if error.field else ""
        print(f"line {error.line}:{field} {error.message}", file=sys.stderr)
    if report.errors_omitted:
        print(f"... and {report.errors_omitted} more errors", file=sys.stderr)
    print(
        f"{report.registry}: {report.received} rows read, {report.imported} imported,"
        f" {report.duplicates} duplicates, {report.rejected} rejected"
    )
    return 0 if report.rejected == 0 else 1


def _registry_serve_example(args: argparse.Namespace) -> int:
    import itertools

    import uvicorn

    from tracing.markings.example_server import DEMO_RECORDS, create_example_app, generated, load_csv

    if args.file:
        candidates = load_csv(Path(args.file).read_text(encoding="utf-8"))
    else:
        candidates = list(itertools.chain(DEMO_RECORDS, generated(args.records, args.seed)))
    app = create_example_app(candidates, token=args.token)
    print(
        f"example registry with {len(candidates)} records on http://{args.host}:{args.port}/lookup",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def openapi_document() -> str:
    from tracing.api.app import create_app
    from tracing.config import Settings

    app = create_app(Settings(database_url="sqlite+aiosqlite://"), check_migrations=False)
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _openapi(args: argparse.Namespace) -> int:
    document = openapi_document()
    if args.check:
        current = OPENAPI_PATH.read_text() if OPENAPI_PATH.exists() else ""
        if current != document:
            print(f"{OPENAPI_PATH} is out of date; run `tracing openapi`", file=sys.stderr)
            return 1
        return 0
    OPENAPI_PATH.parent.mkdir(parents=True, exist_ok=True)
    OPENAPI_PATH.write_text(document)
    print(f"wrote {OPENAPI_PATH}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracing", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (migrates first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-migrate", action="store_true", help="do not run migrations first")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not deliver webhooks or sweep for overdue requests in this process (run `tracing worker`)",
    )
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="deliver webhooks and sweep for overdue requests")
    worker.add_argument("--once", action="store_true", help="deliver what is due now, sweep once, and exit")
    worker.set_defaults(handler=_worker)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=_migrate)

    token = commands.add_parser("token", help="print a signed JWT (development and tests)")
    token.add_argument("--sub", required=True)
    token.add_argument("--agency", required=True)
    token.add_argument("--country", required=True)
    token.add_argument("--role", action="append", required=True)
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(handler=_token)

    demo = commands.add_parser("demo", help="load demo agencies and trace requests")
    demo.set_defaults(handler=_demo)

    audit = commands.add_parser("audit", help="verify the audit trail, sign checkpoints, check bundles")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_commands.add_parser("verify", help="verify every chain and the latest checkpoint").set_defaults(
        handler=_audit_verify
    )
    audit_commands.add_parser("checkpoint", help="sign a checkpoint over all chain heads now").set_defaults(
        handler=_audit_checkpoint
    )
    audit_commands.add_parser(
        "public-key", help="print the signing public key (PEM), then those of earlier keys"
    ).set_defaults(handler=_audit_public_key)
    verify_bundle = audit_commands.add_parser("verify-bundle", help="verify an evidence bundle offline")
    verify_bundle.add_argument("file", help="the bundle (compact JWS) as downloaded")
    verify_bundle.add_argument("--public-key", help="PEM file (or PEM text) of the signing public key")
    verify_bundle.set_defaults(handler=_audit_verify_bundle)

    registry = commands.add_parser("registry", help="import registry records, run the example registry")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    import_ = registry_commands.add_parser(
        "import", help="stream a CSV or JSON-lines file into a local registry (errors go to stderr)"
    )
    import_.add_argument("registry", help="the registry's code or UUID")
    import_.add_argument("file", help="CSV with a header row, or JSON lines (.jsonl/.ndjson)")
    import_.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name")
    import_.add_argument(
        "--encoding",
        default="utf-8",
        help="utf-8 (default) or an ASCII-compatible encoding (latin-1, cp1251, gb18030...)",
    )
    import_.set_defaults(handler=_registry_import)
    example = registry_commands.add_parser(
        "serve-example", help="run the reference HTTP registry (generated records) for tests and demos"
    )
    example.add_argument("--host", default="127.0.0.1")
    example.add_argument("--port", type=int, default=8765)
    example.add_argument("--records", type=int, default=10_000, help="generated records (default 10000)")
    example.add_argument("--seed", type=int, default=2009)
    example.add_argument("--file", help="serve the records of this CSV file instead")
    example.add_argument("--token", help="require Authorization: Bearer TOKEN")
    example.set_defaults(handler=_registry_serve_example)

    openapi = commands.add_parser("openapi", help="write openapi/openapi.json")
    openapi.add_argument("--check", action="store_true", help="fail if the file is out of date")
    openapi.set_defaults(handler=_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from tracing.api.app import DatabaseNotMigrated
    from tracing.audit.signing import SigningKeyMissing

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValidationError as exc:
        problems = "; ".join(error["msg"] for error in exc.errors())
        print(f"tracing: invalid configuration: {problems}", file=sys.stderr)
    except (DatabaseNotMigrated, SigningKeyMissing, RuntimeError, FileNotFoundError) as exc:
        print(f"tracing: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
