"""A real HTTP/1.1 webhook receiver on 127.0.0.1 for tests and benchmarks, with scriptable faults.

Each request is answered by a `Reply` chosen by the test: a status, headers, a body (possibly
streamed and huge), a delay before answering, or no answer at all. Connections are kept alive, as
real receivers do. Bound to loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.perf_counter)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    """Seconds to wait before answering."""
    stream_bytes: int = 0
    """When set, the body is this many bytes streamed in 64 KiB chunks (a huge answer)."""
    hang: bool = False
    """Never answer (until the connection is closed by the client)."""
    chunk_bytes: int = 65536
    chunk_delay: float = 0.0
    """Seconds between streamed chunks (a body that trickles in)."""


Behaviour = Callable[[Received], Reply | Awaitable[Reply]]
_REASONS = {200: "OK", 204: "No Content", 302: "Found", 410: "Gone", 500: "Internal Server Error"}


class Receiver:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour: Behaviour = behaviour or (lambda _: Reply())
        self.received: list[Received] = []
        self.streamed_bytes = 0
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Condition()
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_for(self, count: int, seconds: float = 30) -> list[Received]:
        """Until `count` requests have arrived (bounded wait)."""
        async with asyncio.timeout(seconds):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                received = await _read_request(reader)
                if received is None:
                    return
                async with self._arrived:
                    self.received.append(received)
                    self._arrived.notify_all()
                reply = self.behaviour(received)
                if isinstance(reply, Awaitable):
                    reply = await reply
                if reply.hang:
                    await reader.read()  # until the client gives up and closes
                    return
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                await self._answer(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:  # the receiver is closing
            return
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        length = reply.stream_bytes or len(reply.body)
        head = [
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
            f"content-length: {length}",
        ]
        head += [f"{name}: {value}" for name, value in reply.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        if not reply.stream_bytes:
            writer.write(reply.body)
            await writer.drain()
            return
        chunk = b"x" * reply.chunk_bytes
        async for piece in _chunks(reply.stream_bytes, chunk):
            writer.write(piece)
            await writer.drain()
            self.streamed_bytes += len(piece)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)


async def _chunks(total: int, chunk: bytes) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(method, path, headers, body)


async def free_port_with_nothing_listening() -> int:
    """A loopback port that was just free: connections to it are refused."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port
