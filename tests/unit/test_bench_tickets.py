"""The guarded benchmarks' rotating tickets (``benchmarks/tickets.py``, issue 17).

Why these tests: the point of the set is that no text cache of the sidecar hits across requests
while the tickets stay comparable to the benchmark's old one (size, PII density, constant system
prompt). If the set collapsed to one body, or the wrk script stopped cycling, the benchmark would
silently flatter the sidecar again.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import payload  # type: ignore[import-not-found]  # benchmarks/ is not a package
import tickets  # type: ignore[import-not-found]

from proxy.demo.fake_upstream import build_fake_upstream

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+1 \d{3} \d{3} \d{4}|\(\d{3}\) \d{3}-\d{4}")
SIZES = (2048, 16384)


def _user(body: bytes) -> str:
    messages = json.loads(body)["messages"]
    assert messages[0] == payload.MESSAGES[0]  # the system prompt never changes
    return str(messages[-1]["content"])


@pytest.mark.parametrize("size", SIZES)
def test_tickets_are_distinct_and_deterministic(size: int) -> None:
    a, b = tickets.TicketSet(size), tickets.TicketSet(size)
    assert len(a) == tickets.COUNT
    assert a.pieces == b.pieces  # same seed, same set
    assert tickets.TicketSet(size, seed=tickets.SEED + 1).pieces != a.pieces
    assert len(set(a.templates)) == len(a)  # the tickets themselves differ, not only their ids
    texts = [_user(a.body(i)) for i in range(3 * len(a))]  # three laps: still no repeat
    assert len(set(texts)) == len(texts)
    assert texts[5] == a.text(5)
    # Still distinct once the contact data is masked: pii redacts it before budget counts tokens.
    masked = [PHONE.sub("<PHONE>", EMAIL.sub("<EMAIL>", t)) for t in texts]
    assert len(set(masked)) == len(masked)
    emails = [set(EMAIL.findall(t)) for t in texts[:50]]
    assert all(x.isdisjoint(y) for i, x in enumerate(emails) for y in emails[i + 1 :])
    same = tickets.TicketSet(size, same=True)
    assert {same.body(i) for i in range(10)} == {same.body(0)}


@pytest.mark.parametrize("size", SIZES)
def test_tickets_keep_size_and_pii_density(size: int) -> None:
    reference = payload.ticket(size)  # the old benchmark ticket
    want_emails, want_phones = len(EMAIL.findall(reference)), len(PHONE.findall(reference))
    ts = tickets.TicketSet(size)
    for i in range(len(ts)):
        text = ts.text(i)
        assert abs(len(text) - size) <= 0.05 * size
        assert tickets.MARKER not in text
        # Within one address or phone number of the old ticket (a cut at the end may drop one).
        assert abs(len(EMAIL.findall(text)) - want_emails) <= 1 + want_emails // 20, text
        assert abs(len(PHONE.findall(text)) - want_phones) <= 1 + want_phones // 20, text


def test_uid_is_fixed_width_letters_and_distinct() -> None:
    ids = [tickets.uid(i) for i in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(u) == tickets.UID_WIDTH and u.isalpha() and u.islower() for u in ids)
    assert len(tickets.MARKER) == tickets.UID_WIDTH  # the bodies' size does not move with the id


def test_fake_upstream_echoes_the_rotating_ticket() -> None:
    """The moderation output check and pii's restore see the ticket again only if the fake
    upstream still echoes the last user message of these bodies."""
    ts = tickets.TicketSet(2048)
    transport = httpx.ASGITransport(app=build_fake_upstream())

    async def ask(i: int) -> str:
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
            r = await client.post("/v1/chat/completions", content=ts.body(i), headers=payload.HEADERS)
            assert r.status_code == 200
            return str(r.json()["choices"][0]["message"]["content"])

    for i in (0, 7, 300):
        assert asyncio.run(ask(i)).endswith(ts.text(i))


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the sidecar serves wrk
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.bodies.append(body)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []
    handler = type("Handler", (_Recorder,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_lua_script_files(tmp_path: Path) -> None:
    ts = tickets.TicketSet(2048, count=4)
    ts.write_lua(tmp_path / "t.lua", tmp_path / "t.jsonl")
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert [line.split(tickets.MARKER) for line in lines] == ts.pieces  # what the script splits
    script = (tmp_path / "t.lua").read_text()
    assert str(tmp_path / "t.jsonl") in script
    assert "request = function()" in script and "WRKJSON" in script


@pytest.mark.parametrize("same", [False, True])
def test_wrk_cycles_through_the_bodies(tmp_path: Path, recorder: tuple[str, list[bytes]], same: bool) -> None:
    """wrk for 1 s with the generated script: request n carries ``body(n)`` (ticket ``n % count``
    with id ``uid(n)``), so the set cycles and no body repeats; with ``same``, one body only."""
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (apt-get install wrk): the benchmark falls back to one body")
    url, received = recorder
    ts = tickets.TicketSet(2048, count=3, same=same)
    ts.write_lua(tmp_path / "t.lua", tmp_path / "t.jsonl")

    def run() -> list[bytes]:
        start = len(received)
        out = subprocess.run(
            [wrk, "-t1", "-c2", "-d1s", "-s", str(tmp_path / "t.lua"), url],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        summary = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))[8:])
        assert summary["requests"] > 0 and summary["status"] == 0
        return received[start:]

    first = run()
    assert len(first) > len(ts)  # at least one lap
    if same:
        assert set(first) == {ts.body(0)}
        return
    assert len(set(first)) == len(first)  # no body sent twice
    expected = {ts.body(i) for i in range(len(first) + 4)}  # + the one wrk checks the script with
    assert set(first) <= expected
    assert ts.body(len(ts)) in first  # ticket 0 again, with a new id: the script wrapped around
    # The next run (next row, round or warm-up) goes on from where this one stopped.
    second = run()
    assert second and set(second).isdisjoint(first)
    ahead = len(first) + tickets.SLACK
    assert set(second) <= {ts.body(i) for i in range(ahead - tickets.SLACK, ahead + len(second) + 4)}
