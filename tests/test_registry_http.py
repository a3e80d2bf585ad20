"""The HTTP registry adapter: the real example server on 127.0.0.1, a server that never answers, a
closed port, and httpx.MockTransport for 500s, malformed JSON and huge bodies. Retries are bounded,
errors are typed, and the circuit breaker stops asking a dead registry."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from tenacity import wait_none

from tests.registry_helpers import ServerThread
from tracing.markings.adapters import (
    CircuitBreaker,
    HttpPolicy,
    HttpRegistry,
    RegistryBadResponse,
    RegistryUnavailable,
)
from tracing.markings.example_server import DEMO_RECORDS, create_example_app, generated
from tracing.markings.keys import lookup_plan
from tracing.markings.matching import MatchClass, Reading, match_all
from tracing.models.registry import AdapterKind, Registry, RegistryKind

READING = Reading("LX 1O23", "Izhmash", "AKM", "7.62x39mm")
FAST = HttpPolicy(attempts=3, wait=wait_none())


def registry(url: str, **fields: object) -> Registry:
    values: dict = {
        "code": "RU-KC", "name": "Kalashnikov Concern records", "kind": RegistryKind.manufacturer_records,
        "owner_country": "RU", "adapter": AdapterKind.http, "url": url, "timeout_seconds": 2.0,
    }  # fmt: skip
    values.update(fields)
    return Registry(**values)


@pytest.fixture(scope="module")
def example_registry() -> Iterator[str]:
    app = create_example_app([*DEMO_RECORDS, *generated(2000, seed=5)], token="letmein")
    with ServerThread(app) as server:
        yield server.url


async def lookup(adapter: HttpRegistry) -> list:
    return await adapter.lookup(READING, lookup_plan(READING.serial_number))


async def test_example_server_answers_a_confusion_with_the_true_record(example_registry: str) -> None:
    auth = {"auth_header": "Authorization", "auth_value": "Bearer letmein"}
    async with httpx.AsyncClient() as http:
        adapter = HttpRegistry(registry(example_registry, **auth), http, CircuitBreaker(), FAST)
        candidates = await lookup(adapter)
    best = match_all(READING, candidates)[0]
    assert (best.match_class, best.candidate.ref) == (MatchClass.confusable, "KC-1975-1023")
    assert best.candidate.details["details"] == {"exported_to": "NG", "licence": "2009/445"}


async def test_a_refused_token_is_an_error_not_retried(example_registry: str) -> None:
    async with httpx.AsyncClient() as http:
        adapter = HttpRegistry(registry(example_registry), http, CircuitBreaker(), FAST)
        with pytest.raises(RegistryBadResponse, match="HTTP 401"):
            await lookup(adapter)


async def test_a_registry_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel; nothing ever answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with httpx.AsyncClient() as http:
            adapter = HttpRegistry(registry(url, timeout_seconds=0.2), http, CircuitBreaker(), FAST)
            with pytest.raises(RegistryUnavailable, match="timed out"):
                await lookup(adapter)


async def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient() as http:
        adapter = HttpRegistry(registry(f"http://127.0.0.1:{port}"), http, CircuitBreaker(), FAST)
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            await lookup(adapter)


class Scripted:
    """A MockTransport handler answering from a script, counting the calls."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        body = json.loads(request.content)
        assert body["confusable_key"] == "1X1023" and body["normalized_serial"] == "LX1O23"
        answer = self.responses[min(self.calls, len(self.responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def adapter_for(handler: Scripted, breaker: CircuitBreaker | None = None) -> HttpRegistry:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpRegistry(registry("http://registry.test"), http, breaker or CircuitBreaker(), FAST)


GOOD = httpx.Response(
    200, json={"records": [{"record_id": "1", "serial_number": "LX1023", "make": "Izhmash"}]}
)


async def test_500s_are_retried_a_bounded_number_of_times() -> None:
    handler = Scripted(httpx.Response(500, text="boom"))
    with pytest.raises(RegistryUnavailable, match="HTTP 500"):
        await lookup(adapter_for(handler))
    assert handler.calls == 3


async def test_a_transient_failure_is_retried_until_it_answers() -> None:
    handler = Scripted(httpx.Response(503), httpx.ReadTimeout("slow"), GOOD)
    candidates = await lookup(adapter_for(handler))
    assert [c.ref for c in candidates] == ["1"] and handler.calls == 3


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, content=b"{not json"), "not valid JSON"),
        (httpx.Response(200, content=b"\xff\xfe"), "not valid JSON"),
        (httpx.Response(200, json=["records"]), "does not follow the contract"),
        (httpx.Response(200, json={"records": [{"make": "Izhmash"}]}), "records.0.serial_number"),
        (httpx.Response(200, json={"records": [{"serial_number": "x"}] * 500}), "records"),
        (httpx.Response(200, content=b"[" * 100_000), "not valid JSON"),
        (httpx.Response(200, content=b" " * (2 * 1024 * 1024)), "larger than"),
        (httpx.Response(404), "HTTP 404"),
    ],
)
async def test_unusable_answers_are_typed_errors_and_not_retried(
    response: httpx.Response, message: str
) -> None:
    handler = Scripted(response)
    with pytest.raises(RegistryBadResponse, match=message):
        await lookup(adapter_for(handler))
    assert handler.calls == 1


async def test_a_huge_streamed_body_is_cut_off() -> None:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):
            yield b"x" * 65536  # 640 MiB if read to the end

    handler = Scripted(httpx.Response(200, content=endless()))
    with pytest.raises(RegistryBadResponse, match="larger than"):
        await lookup(adapter_for(handler))


async def test_circuit_breaker_stops_asking_a_dead_registry_then_tries_again() -> None:
    now = [1000.0]
    breaker = CircuitBreaker(threshold=2, reset_seconds=30, clock=lambda: now[0])
    handler = Scripted(httpx.Response(503))
    adapter = adapter_for(handler, breaker)
    for _ in range(2):
        with pytest.raises(RegistryUnavailable):
            await lookup(adapter)
    assert breaker.state == "open" and handler.calls == 6
    with pytest.raises(RegistryUnavailable, match="circuit"):
        await lookup(adapter)
    assert handler.calls == 6  # not asked while open
    now[0] += 31
    assert breaker.state == "half_open"
    handler.responses = [GOOD]
    assert len(await lookup(adapter)) == 1
    assert breaker.state == "closed" and handler.calls == 7


def test_half_open_breaker_lets_one_trial_through_and_reopens_on_failure() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_seconds=10, clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 10
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
