"""An OpenAI-compatible server that answers recorded prompts with a recorded model's answers.

For the router's end-to-end run: ``--tier weak`` answers each GSM8K prompt with
Mixtral-8x7B's recorded response, ``--tier strong`` with GPT-4's, so which backend
answered decides whether the answer was right (``weak_correct``/``strong_correct``).

    python -m bench.replay_backend --tier weak --port 9101 [--data gsm8k_dev.jsonl]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from backends.sim import last_user_text
from bench.workload import data_path

ANSWERS: web.AppKey[dict[str, str]] = web.AppKey("answers", dict)
MODEL: web.AppKey[str] = web.AppKey("model", str)


def load_answers(path: Path, tier: str) -> dict[str, str]:
    field = "weak_response" if tier == "weak" else "strong_response"
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[" ".join(row["prompt"].split())] = str(row[field])
    return out


async def chat(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    prompt = " ".join(last_user_text(body).split())
    answer = request.app[ANSWERS].get(prompt)
    if answer is None:
        return web.json_response(
            {"error": {"message": "prompt not in the recording", "type": "invalid_request_error",
                       "param": "messages", "code": None}}, status=404)  # fmt: skip
    prompt_tokens = max(1, len(json.dumps(body.get("messages", ""))) // 4)
    completion_tokens = max(1, len(answer) // 4)
    return web.json_response(
        {
            "id": f"replay-{abs(hash(prompt)) % 10**12}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.app[MODEL],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": request.app[MODEL]}]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tier", choices=["weak", "strong"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", default=str(data_path("router/gsm8k_dev.jsonl")))
    args = parser.parse_args()
    app = web.Application()
    app[ANSWERS] = load_answers(Path(args.data), args.tier)
    app[MODEL] = "replay-mixtral-8x7b" if args.tier == "weak" else "replay-gpt-4"
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
