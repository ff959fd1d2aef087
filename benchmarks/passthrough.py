"""A minimal pass-through proxy: the baseline the sidecar's overhead is measured against.

    python benchmarks/passthrough.py --client aiohttp --port 9200 --upstream http://127.0.0.1:9100/v1

Forwards ``POST /v1/chat/completions`` bytes (headers minus hop-by-hop ones) to the upstream and
returns the answer: a ``Response`` when whole, a ``StreamingResponse`` for ``text/event-stream``.
No parsing, no validation, no policy. Clients: ``aiohttp`` (shared ClientSession, pooled
TCPConnector), ``httpx`` (shared AsyncClient, default transport), ``httpx-aiohttp`` (httpx API
over an aiohttp transport). Served by uvicorn + uvloop + httptools, one worker, log level warning.

The garbage collector gets the sidecar's own tuning (startup heap frozen, first-generation
threshold 10,000; ``--gc-threshold 0`` for Python's defaults), so the comparison measures code,
not a GC setting either side could use.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "proxy-connection",
        "date",
        "server",
    }
)


def build_app(kind: str, upstream: str) -> Starlette:
    url = upstream.rstrip("/") + "/chat/completions"
    clients: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if kind == "aiohttp":
            import aiohttp

            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=30)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)
            clients["c"] = aiohttp.ClientSession(connector=connector, timeout=timeout)
        else:
            import httpx

            cls: Any = httpx.AsyncClient
            if kind == "httpx-aiohttp":
                from httpx_aiohttp import HttpxAiohttpClient as cls
            clients["c"] = cls(timeout=httpx.Timeout(600, connect=10), trust_env=False)
        yield
        await (clients["c"].close() if kind == "aiohttp" else clients["c"].aclose())

    async def chat(request: Request) -> Response:
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k not in DROP]
        client = clients["c"]
        if kind == "aiohttp":
            resp = await client.post(url, data=body, headers=headers)
            out = {k: v for k, v in resp.headers.items() if k.lower() not in DROP}
            if resp.content_type == "text/event-stream":

                async def release() -> None:  # async: a sync background task would go to a thread
                    resp.release()

                task = BackgroundTask(release)
                return StreamingResponse(resp.content.iter_any(), resp.status, out, background=task)
            data = await resp.read()
            resp.release()
            return Response(data, resp.status, out)
        resp = await client.send(
            client.build_request("POST", url, content=body, headers=headers), stream=True
        )
        out = {k: v for k, v in resp.headers.items() if k.lower() not in DROP}
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            task = BackgroundTask(resp.aclose)
            return StreamingResponse(resp.aiter_bytes(), resp.status_code, out, background=task)
        data = await resp.aread()
        await resp.aclose()
        return Response(data, resp.status_code, out)

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=["aiohttp", "httpx", "httpx-aiohttp"], default="aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--upstream", default="http://127.0.0.1:9100/v1", help="API root of the upstream")
    parser.add_argument("--gc-threshold", type=int, default=10_000, help="0: Python defaults")
    args = parser.parse_args()
    if args.gc_threshold > 0:  # the same as proxy.server.tune_gc, kept separate: no sidecar import here
        gc.collect()
        gc.freeze()
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(args.gc_threshold, gen1, gen2)
    uvicorn.run(
        build_app(args.client, args.upstream),
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
