"""The ceiling for bench/load.py: a bare Starlette app under uvicorn answering POST /sms with a
fixed TwiML reply, served with the same uvicorn options as `checkin-bot serve`.

    python -m bench.echo --port 8090 [--workers 2]

Whatever the bot does per text costs on top of what this process costs per request: uvicorn
(HTTP parsing), Starlette routing and reading the form body.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.logs import log_config
from bot.serving import HeadersDeadline, run_uvicorn
from bot.settings import LogFormat

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok</Message></Response>'


async def sms(request: Request) -> Response:
    await request.body()  # a webhook reads its form; this one ignores it
    return Response(TWIML, media_type="text/xml")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/sms", sms, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    # The options of `checkin-bot serve` (bot/cli/run_bot.py), with LOG_FORMAT=text, served
    # the way it serves them (TCP_NODELAY with several workers).
    run_uvicorn(
        uvicorn.Config(
            "bench.echo:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            proxy_headers=False,
            timeout_graceful_shutdown=20,
            timeout_worker_healthcheck=30,
            log_config=log_config(LogFormat.TEXT),
            access_log=False,  # as serve: the bot's app writes its own access lines
            http=HeadersDeadline,
        )
    )


if __name__ == "__main__":
    main()
