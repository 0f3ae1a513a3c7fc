"""Cache scale: lookup latency, memory and restart time from 10k to 100k (to 1M) entries.

Runs the cache helper's ``bench.cache_scale`` once per size in a fresh process (so memory
is measured per size), collects its JSON phases, prints one table and writes a PNG plot
(matplotlib, if installed) of lookup p50/p99, bytes per entry and restart times.

    .venv/bin/python -m bench.scale [--sizes 10000 100000 1000000] [--png bench/scale.png]

1M entries needs about 4-5 GB of memory and several minutes per phase on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import ROOT, machine


def run_size(n: int, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bench.cache_scale", "--n", str(n)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"bench.cache_scale --n {n} failed:\n{done.stderr[-3000:]}")
    phases: dict[str, Any] = {"n": n, "wall_s": round(time.monotonic() - started, 1)}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            phases[row.pop("phase")] = row
    return phases


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| entries | fill entries/s | bytes/entry (RSS) | exact p50/p99 ms | semantic p50/p99 ms "
        "(shared scope) | semantic p50/p99 ms (small scope) | miss p50/p99 ms "
        "| restart from snapshot s | restart by rebuild s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lk = r.get("lookup", {})

        def pp(kind: str, lk: dict[str, Any] = lk) -> str:
            v = lk.get(kind)
            return f"{v['p50_ms']:.2f} / {v['p99_ms']:.2f}" if v else "–"

        fill = r.get("fill", {})
        out.append(
            f"| {r['n']:,} | {fill.get('entries_per_s', '–')} | {fill.get('bytes_per_entry', '–')} "
            f"| {pp('exact')} | {pp('semantic_big_group')} | {pp('semantic_small_group')} "
            f"| {pp('miss_big_group')} | {r.get('restart_snapshot', {}).get('seconds', '–')} "
            f"| {r.get('restart_rebuild', {}).get('seconds', '–')} |"
        )
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    ns = [r["n"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for kind, label in (("exact", "exact"), ("semantic_big_group", "semantic (shared scope)"),
                        ("miss_big_group", "miss (shared scope)")):  # fmt: skip
        for q, style in (("p50_ms", "-o"), ("p99_ms", "--x")):
            ax.plot(ns, [r["lookup"][kind][q] for r in rows], style, label=f"{label} {q[:3]}")
    ax.set(xscale="log", xlabel="entries", ylabel="lookup ms", title="Lookup latency")
    ax.legend(fontsize=7)
    axes[1].plot(ns, [r["fill"]["bytes_per_entry"] for r in rows], "-o")
    axes[1].set(xscale="log", xlabel="entries", ylabel="bytes / entry (RSS)", title="Memory")
    for key, label in (("restart_snapshot", "from snapshot"), ("restart_rebuild", "rebuild")):
        axes[2].plot(ns, [r[key]["seconds"] for r in rows], "-o", label=label)
    axes[2].set(xscale="log", yscale="log", xlabel="entries", ylabel="s", title="Restart")
    axes[2].legend()
    fig.suptitle(f"cachegate cache scale ({machine()})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--png", type=Path, default=Path("bench/scale.png"))
    p.add_argument("--json", type=Path)
    p.add_argument("--timeout-s", type=float, default=3600.0, help="per size")
    args = p.parse_args()
    print(f"machine: {machine()}")
    rows = []
    for n in args.sizes:
        print(f"running {n:,} entries ...", file=sys.stderr, flush=True)
        rows.append(run_size(n, args.timeout_s))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if plot(rows, args.png):
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
