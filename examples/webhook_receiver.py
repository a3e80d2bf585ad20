"""A minimal webhook receiver for a national contact point: verifies each post's Standard Webhooks
signature, drops duplicates (deliveries are at-least-once), prints the event, and answers 204.

    TRACING_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 9000

Register its URL for your agency (an admin does: PATCH /v1/agencies/{code} {"webhook_url": ...});
the answer carries the secret, once. A real receiver would queue the event and act on it (fetch the
request with its own token, acknowledge, answer), and answer quickly: the service waits 10 seconds.
Needs the `standardwebhooks` package (installed with the service).
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY_BYTES = 1024 * 1024


class Unverified(Exception):
    pass


def verify(secret: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The event, if the signature over (webhook-id, webhook-timestamp, body) is valid and the
    timestamp is within five minutes of now; raises Unverified otherwise."""
    try:
        return Webhook(secret).verify(body, headers)
    except (WebhookVerificationError, ValueError) as exc:
        raise Unverified(str(exc) or "bad signature") from exc


def make_handler(secret: str, seen: set[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            try:
                event = verify(secret, body, {k: v for k, v in self.headers.items()})
            except Unverified as exc:
                print(f"refused a post: {exc}")
                self.send_response(401)
                self.end_headers()
                return
            if event["id"] not in seen:  # the same webhook-id again is a retry: acknowledge only
                seen.add(event["id"])
                print(json.dumps({"type": event["type"], **event["data"]}, ensure_ascii=False))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # quiet: the events are printed above

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    secret = os.environ.get("TRACING_WEBHOOK_SECRET")
    if not secret:
        parser.error("set TRACING_WEBHOOK_SECRET to the secret shown when the webhook URL was registered")
    server = ThreadingHTTPServer((args.host, args.port), make_handler(secret, set()))
    print(f"listening on http://{args.host}:{args.port}/ (any path)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
