"""A flaky OpenAI-compatible upstream for the fault storm: the fake upstream, failing at random.

    python benchmarks/flaky.py --port 9301 --fail-ratio 0.5 --seed 1

Serves ``proxy.demo.fake_upstream.build_fake_upstream()`` in-process, behind an ASGI wrapper
that answers a random ``--fail-ratio`` share of ``/v1/...`` requests itself with a 503 and
OpenAI's error envelope (no ``Retry-After``, as a provider's overloaded answer), and counts
every ``/v1`` request it receives, per second since the last reset:

    GET  /_flaky/stats   {"requests": N, "failed": F, "per_second": [[requests, failed], ...]}
    POST /_flaky/reset   zero the counters (and the fake's request log)

With ``--fail-ratio 0`` it is a healthy upstream with the same counter (the storm's backup).
The fake's request log is cleared every 1000 requests so memory stays flat during long runs.
Served by uvicorn + uvloop + httptools, one worker, log level warning, no access log.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from proxy.demo.fake_scenario import FakeState, error_envelope
from proxy.demo.fake_upstream import build_fake_upstream

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLEAR_LOG_EVERY = 1000


class Flaky:
    def __init__(self, app: ASGIApp, state: FakeState, fail_ratio: float, seed: int) -> None:
        self._app = app
        self._state = state
        self._fail_ratio = fail_ratio
        self._rng = random.Random(seed)
        self._error = json.dumps(
            error_envelope(503, "flaky upstream: overloaded (benchmark fault injection)")
        ).encode()
        self.reset()

    def reset(self) -> None:
        self.started = time.monotonic()
        self.requests = 0
        self.failed = 0
        self.per_second: list[list[int]] = []
        self._state.reset()

    def _count(self, failed: bool) -> None:
        second = int(time.monotonic() - self.started)
        while len(self.per_second) <= second:
            self.per_second.append([0, 0])
        self.per_second[second][0] += 1
        self.per_second[second][1] += int(failed)
        self.requests += 1
        self.failed += int(failed)
        if self.requests % CLEAR_LOG_EVERY == 0:
            self._state.requests.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/_flaky/stats":
            stats = {"requests": self.requests, "failed": self.failed, "per_second": self.per_second}
            await _answer(send, 200, json.dumps(stats).encode())
            return
        if path == "/_flaky/reset":
            self.reset()
            await _answer(send, 200, b'{"ok": true}')
            return
        if not path.startswith("/v1/"):
            await self._app(scope, receive, send)
            return
        failed = self._rng.random() < self._fail_ratio
        self._count(failed)
        if not failed:
            await self._app(scope, receive, send)
            return
        while (await receive()).get("more_body", False):  # read the request body before answering
            pass
        await _answer(send, 503, self._error)


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9301)
    parser.add_argument("--fail-ratio", type=float, default=0.5, help="share of /v1 requests answered 503")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fake = build_fake_upstream()
    state: FakeState = fake.state.fake
    uvicorn.run(
        Flaky(fake, state, args.fail_ratio, args.seed),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
