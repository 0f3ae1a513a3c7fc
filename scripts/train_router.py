"""Reproduce the bundled default router, router/data/default_router.npz.

    .venv/bin/python -m scripts.train_router [--out router/data/default_router.npz]

Fits on every outcome row in ../shared/data/router (RouteLLM's evaluation
data, Apache-2.0: MMLU 9,829 rows + GSM8K 923 rows, strong = GPT-4 as
"large", weak = Mixtral-8x7B as "small") through the same ``train_router``
the CLI calls, with vectors from ``bench.embcache``. The kNN memory is a
seeded subsample (``FitParams.memory_size``) projected to ``FitParams.memory_dims``
dimensions, so the artifact stays under 1 MB.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.embcache import SHARED_DATA, embed_texts
from router import FitParams, train_router

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "router" / "data" / "default_router.npz"


def write_records(path: Path) -> int:
    count = 0
    with path.open("w") as out:
        for name in ("mmlu_dev.jsonl", "gsm8k_dev.jsonl"):
            for line in (SHARED_DATA / "router" / name).open():
                row = json.loads(line)
                record = {
                    "prompt": row["prompt"],
                    "small_ok": row["weak_correct"],
                    "large_ok": row["strong_correct"],
                    "category": "math" if row["benchmark"] == "gsm8k" else "general",
                    "group": row.get("subject", row["benchmark"]),
                }
                out.write(json.dumps(record) + "\n")
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "records.jsonl"
        write_records(records)
        report = train_router(records, embed_texts, args.out, kind="blend", params=FitParams())
    print(report)


if __name__ == "__main__":
    main()
