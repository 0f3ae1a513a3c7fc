"""The router end to end: GSM8K through cachegate to two replay backends.

The small backend answers with Mixtral-8x7B's recorded responses, the large one with
GPT-4's (RouteLLM's public outcomes, ``../shared/data/router/gsm8k_dev.jsonl``). The
router's threshold is calibrated on one half of the prompts (scored offline with the
same features the proxy computes) for a target large share; the other half is sent
through cachegate with the official openai client. An answer counts as correct when
the recorded outcome of the tier that answered is correct.

Note what this cannot measure: the replayed answers are fixed, so the in-context
examples cachegate prepends for the small model cannot change them.

With ``--judge-rate p`` the sampled judge is on (numeric final-answer test): a
share p of the small model's answers is also asked of the large replay backend
in the background, and its verdicts (written as training records) are compared
with the graded outcome of the small model's recorded answer.

    .venv/bin/python -m bench.router_e2e [--large-share 0.3] [--n 400] [--judge-rate 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai

from backends import OnnxEmbedder
from bench.embcache import embed_texts
from bench.procs import free_port, machine
from bench.targets import PRICES, _process, cachegate
from bench.workload import data_path
from classifier import Classifier
from router import RouteFeatures, calibrate_threshold, estimate_tokens, load_router, train_router

PY = sys.executable


def rows() -> list[dict[str, Any]]:
    path = data_path("router/gsm8k_dev.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_without_test(calib: list[dict[str, Any]], out: Path) -> None:
    """A router fitted on MMLU and the calibration half of GSM8K only.

    The bundled artifact was fitted on all of GSM8K dev, the prompts scored here
    included, so it is not used: its numbers would leak.
    """
    mmlu = data_path("router/mmlu_dev.jsonl").read_text().splitlines()
    records = out.parent / "train.jsonl"
    with records.open("w") as fh:
        for line in mmlu:
            if line.strip():
                r = json.loads(line)
                fh.write(
                    json.dumps(
                        {
                            "prompt": r["prompt"],
                            "small_ok": r["weak_correct"],
                            "large_ok": r["strong_correct"],
                            "group": r.get("subject"),
                        }
                    )
                    + "\n"
                )
        for r in calib:
            fh.write(
                json.dumps(
                    {
                        "prompt": r["prompt"],
                        "small_ok": r["weak_correct"],
                        "large_ok": r["strong_correct"],
                        "group": "gsm8k",
                    }
                )
                + "\n"
            )
    train_router(records, embed_texts, out)


def offline_scores(prompts: list[str], artifact: Path) -> list[float]:
    embedder = OnnxEmbedder()
    clf = Classifier.load_default(embedder.embed_batch)
    router = load_router(artifact)
    vectors = np.concatenate(
        [embedder.embed_batch(prompts[i : i + 64]) for i in range(0, len(prompts), 64)]
    )
    feats = [
        RouteFeatures(v, clf.classify(v, p).category, estimate_tokens(p))
        for p, v in zip(prompts, vectors, strict=True)
    ]
    return router.score_batch(feats)


def cost(prompt_tokens: int, completion_tokens: int, tier: str) -> float:
    p_in, p_out = PRICES[tier]
    return (prompt_tokens * p_in + completion_tokens * p_out) / 1000


async def send(
    base: str, test: list[dict[str, Any]], concurrency: int
) -> list[tuple[str, int, int]]:
    client = openai.AsyncOpenAI(base_url=base, api_key="bench", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(row: dict[str, Any]) -> tuple[str, int, int]:
        async with sem:
            raw = await client.chat.completions.with_raw_response.create(
                model="auto",
                messages=[{"role": "user", "content": row["prompt"]}],
                extra_headers={"cache-control": "no-cache"},  # routing, not caching, is measured
            )
            body = raw.parse()
            usage = body.usage
            return (
                raw.headers["x-cachegate-backend"],
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            )

    try:
        return await asyncio.gather(*(one(r) for r in test))
    finally:
        await client.close()


def judge_settled(base: str, timeout_s: float = 120.0) -> dict[str, float]:
    """Waits until no judge call runs; returns the judge's metric samples."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(base.removesuffix("/v1") + "/metrics", timeout=10).text
        samples = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line.startswith("cachegate_judge_")
        }
        if samples.get("cachegate_judge_in_flight", 0.0) == 0.0 or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def judge_table(records_path: Path, test: list[dict[str, Any]], samples: dict[str, float]) -> None:
    # The proxy records the question as it embedded it (whitespace folded).
    graded = {" ".join(r["prompt"].split()): bool(r["weak_correct"]) for r in test}
    verdicts = (
        [json.loads(line) for line in records_path.read_text().splitlines()]
        if records_path.exists()
        else []
    )
    keys = [" ".join(str(v["prompt"]).split()) for v in verdicts]
    pairs = [
        (bool(v["small_ok"]), graded[k]) for v, k in zip(verdicts, keys, strict=True) if k in graded
    ]
    print("\nSampled judge (numeric final answer), verdicts vs the graded small-model outcome:")
    for name, value in sorted(samples.items()):
        print(f"  {name} {value:g}")
    if pairs:
        agree = sum(a == b for a, b in pairs) / len(pairs)
        print(f"  records {len(pairs)}: verdict = graded outcome on {agree:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large-share", type=float, default=0.3)
    parser.add_argument("--n", type=int, default=400, help="prompts sent through the proxy")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--judge-rate", type=float, default=0.0, help="sampled judge share of small answers"
    )
    args = parser.parse_args()
    data = rows()
    order = np.random.default_rng(args.seed).permutation(len(data))
    half = len(data) // 2
    calib = [data[i] for i in order[:half]]
    test = [data[i] for i in order[half:]][: args.n]
    weak_port, strong_port = free_port(), free_port()
    with (
        _process([PY, "-m", "bench.replay_backend", "--tier", "weak", "--port", str(weak_port)],
                 f"http://127.0.0.1:{weak_port}/v1/models"),
        _process([PY, "-m", "bench.replay_backend", "--tier", "strong", "--port", str(strong_port)],
                 f"http://127.0.0.1:{strong_port}/v1/models"),
        tempfile.TemporaryDirectory() as tmp,
    ):  # fmt: skip
        artifact = Path(tmp) / "router.npz"
        train_without_test(calib, artifact)
        scores = offline_scores([r["prompt"] for r in calib], artifact)
        threshold = calibrate_threshold(scores, args.large_share)
        cfg: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": free_port()},
            "storage": {"url": f"sqlite+aiosqlite:///{Path(tmp) / 'r.db'}"},
            "auth": {"require_keys": False},
            "backends": [
                {"name": "small", "tier": "small", "model": "replay-mixtral-8x7b",
                 "base_url": f"http://127.0.0.1:{weak_port}/v1",
                 "price": dict(zip(("input_per_1k", "output_per_1k"), PRICES["small"], strict=True))},
                {"name": "large", "tier": "large", "model": "replay-gpt-4",
                 "base_url": f"http://127.0.0.1:{strong_port}/v1",
                 "price": dict(zip(("input_per_1k", "output_per_1k"), PRICES["large"], strict=True))},
            ],
            "router": {"threshold": threshold, "artifact": str(artifact)},
        }  # fmt: skip
        records_path = Path(tmp) / "judge.jsonl"
        if args.judge_rate > 0:
            cfg["router"]["judge"] = {
                "enabled": True,
                "sample_rate": args.judge_rate,
                "method": "numeric",
                "max_in_flight": 16,
                "records_path": str(records_path),
            }
            cfg["privacy"] = {"request_log": True, "store_prompts": True}
        samples: dict[str, float] = {}
        with cachegate(cfg) as base:
            answered = asyncio.run(send(base, test, args.concurrency))
            if args.judge_rate > 0:
                samples = judge_settled(base)
        if args.judge_rate > 0:
            judge_table(records_path, test, samples)
    correct = large = 0
    total_cost = all_large_cost = all_small_cost = 0.0
    for row, (backend, pt, ct) in zip(test, answered, strict=True):
        tier = "large" if backend == "large" else "small"
        large += tier == "large"
        correct += bool(row["strong_correct"] if tier == "large" else row["weak_correct"])
        total_cost += cost(pt, ct, tier)
        all_large_cost += cost(pt, max(1, len(row["strong_response"]) // 4), "large")
        all_small_cost += cost(pt, max(1, len(row["weak_response"]) // 4), "small")
    n = len(test)
    weak = sum(r["weak_correct"] for r in test) / n
    strong = sum(r["strong_correct"] for r in test) / n
    acc = correct / n
    print(f"machine: {machine()}")
    print(f"GSM8K through cachegate: {n} prompts, threshold {threshold:.4f} (router fitted on "
          f"MMLU + {len(calib)} other GSM8K prompts, calibrated on those for "
          f"{args.large_share:.0%} large)")  # fmt: skip
    print("| policy | accuracy | large share | cost ($) |")
    print("|---|---|---|---|")
    print(f"| all small (Mixtral) | {weak:.3f} | 0 % | {all_small_cost:.4f} |")
    print(f"| cachegate router | {acc:.3f} | {large / n:.1%} | {total_cost:.4f} |")
    print(
        f"| random at the same share | {weak + (strong - weak) * large / n:.3f} | {large / n:.1%} | — |"
    )
    print(f"| all large (GPT-4) | {strong:.3f} | 100 % | {all_large_cost:.4f} |")
    gap = strong - weak
    print(f"quality gap recovered: {(acc - weak) / gap:.1%}" if gap > 0 else "no quality gap")


if __name__ == "__main__":
    main()
