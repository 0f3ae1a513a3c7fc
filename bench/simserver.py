"""The simulated backend with answers as long as ``max_tokens`` asks, for the replay.

``cachegate sim-backend`` answers at most 24 tokens and reports ``finish_reason: length``
when ``max_tokens`` is below that, and cachegate (rightly) never caches a truncated answer.
The replay wants latency to follow each trace request's generated tokens, so it runs the
same simulator (``backends.sim.make_sim_app``, same ttft + per-token latency, same
deterministic answers naming a digest of the prompt) with a profile allowing up to
``--answer-tokens`` tokens and reports ``stop``: the model's natural answer had that length.

    python -m bench.simserver --profile large --port 9002 [--answer-tokens 64]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace

from aiohttp import web

from backends.sim import PROFILES, Faults, make_sim_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def natural_stop(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    if isinstance(resp, web.Response) and resp.status == 200 and resp.body is not None:
        body = json.loads(bytes(resp.body))  # type: ignore[arg-type]
        for choice in body.get("choices", []):
            if choice.get("finish_reason") == "length":
                choice["finish_reason"] = "stop"
        return web.json_response(body)
    return resp


def make_app(profile: str, answer_tokens: int, faults: Faults) -> web.Application:
    app = make_sim_app(replace(PROFILES[profile], answer_tokens=answer_tokens), faults)
    app.middlewares.append(natural_stop)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="large")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer-tokens", type=int, default=64)
    parser.add_argument("--latency-scale", type=float, default=1.0)
    parser.add_argument("--max-concurrency", type=int)
    args = parser.parse_args()
    faults = Faults(latency_scale=args.latency_scale, max_concurrency=args.max_concurrency)
    app = make_app(args.profile, args.answer_tokens, faults)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
