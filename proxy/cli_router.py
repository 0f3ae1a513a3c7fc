"""``cachegate router train|calibrate`` and ``cachegate examples refresh``."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np

from backends import OnnxEmbedder
from cache import CacheError, SemanticCache
from classifier import Classifier
from proxy.errors import SettingsError
from proxy.settings import load_settings
from proxy.wiring import build_router_config
from router import (
    RouteFeatures,
    RouterError,
    calibrate_for_budget,
    calibrate_threshold,
    estimate_tokens,
    large_share_at,
    load_router,
    train_router,
)


def cmd_train(args: argparse.Namespace) -> int:
    embedder = OnnxEmbedder()
    report = train_router(Path(args.data), embedder.embed_batch, Path(args.out), args.kind)
    print(f"trained {report.kind} router on {report.records} records → {report.artifact}")
    print(f"artifact: {report.artifact_bytes} bytes; set router.artifact: {report.artifact}")
    return 0


def _prompts(path: Path) -> list[str]:
    prompts = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RouterError(f"{path}:{number}: not JSON: {exc.msg}") from exc
            prompt = row.get("prompt") if isinstance(row, dict) else None
            if not isinstance(prompt, str) or not prompt:
                raise RouterError(f"{path}:{number}: needs a non-empty 'prompt' string")
            prompts.append(prompt)
    if not prompts:
        raise RouterError(f"{path} holds no prompts")
    return prompts


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Scores logged prompts with the configured router and picks the threshold."""
    settings = load_settings(Path(args.config) if args.config else None)
    config, _ = build_router_config(settings.router)
    artifact = Path(args.artifact) if args.artifact else settings.router.artifact
    router = load_router(artifact, config)
    embedder = OnnxEmbedder()
    prompts = _prompts(Path(args.data))
    vectors = np.concatenate(
        [embedder.embed_batch(prompts[i : i + 64]) for i in range(0, len(prompts), 64)]
    )
    classifier = Classifier.load_default(embedder.embed_batch)
    features = [
        RouteFeatures(
            vector=v,
            category=classifier.classify(v, p).category,
            prompt_tokens=estimate_tokens(p),
        )
        for p, v in zip(prompts, vectors, strict=True)
    ]
    scores = router.score_batch(features)
    if args.budget_per_1k is not None:
        small = _price(settings, "small")
        large = _price(settings, "large")
        threshold = calibrate_for_budget(scores, args.budget_per_1k, small, large)
    else:
        threshold = calibrate_threshold(scores, args.large_share)
    share = large_share_at(scores, threshold)
    print(f"{len(scores)} prompts scored; threshold {threshold:.4f} sends {share:.1%} to large")
    print(f"config:\n  router:\n    threshold: {threshold:.4f}")
    return 0


def _price(settings: object, tier: str) -> float:
    """Dollars per request at the backend's prices, for a typical 500-in/250-out request."""
    backends = getattr(settings, "backends", ())
    for b in backends:
        if b.tier == tier:
            return float(b.price.input_per_1k * 0.5 + b.price.output_per_1k * 0.25)
    raise SettingsError(f"no {tier} backend configured")


async def _refresh(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None)
    cache = await SemanticCache.open(settings.storage.url, auto_migrate=True)
    try:
        pruned, kept, offset = [], 0, 0
        while True:
            page = await cache.list_entries(offset=offset, limit=1000)
            if not page:
                break
            offset += len(page)
            for e in page:
                if e.tier != "large":
                    continue
                bad = e.feedback_score is not None and e.feedback_score < 0
                if bad or e.utility < args.min_utility:
                    pruned.append(e.entry_id)
                else:
                    kept += 1
        if not args.dry_run:
            for entry_id in pruned:
                try:
                    await cache.delete(entry_id)
                except CacheError as exc:
                    print(f"entry {entry_id}: {exc}")
        verb = "would prune" if args.dry_run else "pruned"
        print(
            f"example pool: {verb} {len(pruned)} entries below utility {args.min_utility}, kept {kept}"
        )
    finally:
        await cache.close()
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    return asyncio.run(_refresh(args))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    router = sub.add_parser("router", help="train or calibrate the small/large router")
    rsub = router.add_subparsers(dest="router_command", required=True)
    train = rsub.add_parser("train", help="fit a router from {prompt, small_ok, large_ok} JSONL")
    train.add_argument("--data", required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--kind", default="blend")
    train.set_defaults(func=cmd_train)
    cal = rsub.add_parser("calibrate", help="threshold for a large-call share or a budget")
    cal.add_argument("--config")
    cal.add_argument("--data", required=True, help="JSONL of {prompt} from your traffic")
    cal.add_argument("--artifact")
    goal = cal.add_mutually_exclusive_group(required=True)
    goal.add_argument("--large-share", type=float)
    goal.add_argument("--budget-per-1k", type=float, help="dollars per 1k requests")
    cal.set_defaults(func=cmd_calibrate)

    examples = sub.add_parser("examples", help="the in-context example pool")
    esub = examples.add_subparsers(dest="examples_command", required=True)
    refresh = esub.add_parser("refresh", help="prune low-utility and bad-feedback examples")
    refresh.add_argument("--config")
    refresh.add_argument("--min-utility", type=float, default=0.3)
    refresh.add_argument("--dry-run", action="store_true")
    refresh.set_defaults(func=cmd_refresh)
