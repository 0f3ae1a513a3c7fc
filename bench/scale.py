"""Cache scale from 10k to 1M entries: lookup latency (alone and under concurrency), memory
per entry, snapshot write time, restart time from a snapshot and by rebuilding from SQL.

Runs ``bench.cache_scale`` once per size in a fresh process (so memory is measured per
size), keeps each size's JSON lines in ``--out`` (``n<size>.jsonl``), prints the tables
(markdown) and writes a PNG plot (matplotlib, if installed):

    .venv/bin/python -m bench.scale --out /tmp/scale              # 10k .. 1M, ~45 min
    .venv/bin/python -m bench.scale --out /tmp/scale --max-entries 100000   # ~5 min
    .venv/bin/python -m bench.scale --out /tmp/scale --reuse      # tables from kept runs

1M entries needs ~6 GB of memory and ~3 GB of disk (SQLite) and, on 2 cores, ~20-40 min,
most of it building the HNSW graphs (the restart-by-rebuild phase). See
``bench/cache_scale.py`` for the vectors, scopes and phases.
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

SIZES = [10_000, 30_000, 100_000, 300_000, 1_000_000]
Row = dict[str, Any]


def run_size(n: int, out: Path, extra: list[str], timeout_s: float) -> None:
    """Runs one size; its JSON lines go to ``out/n<size>.jsonl`` (stderr next to it)."""
    started = time.monotonic()
    with open(out / f"n{n}.jsonl.part", "w") as fh, open(out / f"n{n}.log", "w") as err:
        done = subprocess.run(
            [sys.executable, "-m", "bench.cache_scale", "--n", str(n), *extra],
            cwd=ROOT, stdout=fh, stderr=err, timeout=timeout_s, check=False,
        )  # fmt: skip
    if done.returncode:
        tail = (out / f"n{n}.log").read_text()[-3000:]
        raise RuntimeError(f"bench.cache_scale --n {n} failed:\n{tail}")
    (out / f"n{n}.jsonl.part").rename(out / f"n{n}.jsonl")
    print(f"{n:,} entries: {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)


def read_size(path: Path) -> Row:
    phases: Row = {}
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            phases[row.pop("phase")] = row
    phases["n"] = phases["config"]["n"]
    return phases


def _pp(d: Row | None) -> str:
    return f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f}" if d else "–"


def _get(r: Row, *path: str) -> Any:
    for key in path:
        if not isinstance(r, dict) or key not in r:
            return "–"
        r = r[key]
    return r


def table(rows: list[Row]) -> str:
    out = [
        "| entries | SQL fill rows/s | RSS bytes/entry (from snapshot / rebuild) "
        "| restart from snapshot s | restart by rebuild s | snapshot write s (index held s) "
        "| write-behind entries/s | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        snap = r.get("snapshot", {})
        out.append(
            f"| {r['n']:,} | {_get(r, 'sql_fill', 'rows_per_s')} "
            f"| {_get(r, 'restart_snapshot', 'bytes_per_entry')} / "
            f"{_get(r, 'restart_rebuild', 'bytes_per_entry')} "
            f"| {_get(r, 'restart_snapshot', 'seconds')} | {_get(r, 'restart_rebuild', 'seconds')} "
            f"| {snap.get('total_s', '–')} ({snap.get('blocked_s', '–')}) "
            f"| {_get(r, 'lookup_during_writes', 'write_behind_entries_per_s')} "
            f"| {_get(r, 'restart_rebuild', 'load')} |"
        )
    return "\n".join(out)


def latency_table(rows: list[Row]) -> str:
    """One line per size and run: after the rebuild, and again after the restart. The
    index search is over the shared scope (exact search up to 4,096 entries a tenant, i.e.
    below ~33k entries here; filtered HNSW above), timed on the index thread: wall clock
    and the thread's CPU time (the wall tail on a shared host is mostly waiting for a
    core)."""
    out = [
        "| entries | run | index search p50/p99 ms: wall (CPU) | semantic, shared scope p50/p99 ms "
        "| semantic, small scope p50/p99 ms | exact p50/p99 ms | miss p50/p99 ms "
        "| semantic hit rate / recall@1 | lookups during snapshot p50/p99/max ms | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for phase, run in (("lookup", "1"), ("lookup_after_restart", "2")):
            lk = r.get(phase)
            if not lk:
                continue
            during = r.get("snapshot", {}).get("lookups_during") if run == "1" else None
            during_s = (
                f"{during['p50_ms']:.2f} / {during['p99_ms']:.2f} / {during['max_ms']:.0f}"
                if during
                else ""
            )
            out.append(
                f"| {r['n']:,} | {run} | {_pp(lk.get('hnsw_big_group'))} "
                f"({_pp(lk.get('hnsw_big_group_cpu'))}) "
                f"| {_pp(lk.get('semantic_big_group'))} | {_pp(lk.get('semantic_small_group'))} "
                f"| {_pp(lk.get('exact'))} | {_pp(lk.get('miss_big_group'))} "
                f"| {lk['semantic_hit_rate']:.4f} / {lk['semantic_recall']:.4f} | {during_s} "
                f"| {lk['load']} |"
            )
    return "\n".join(out)


def concurrency_table(rows: list[Row]) -> str:
    levels = sorted({int(c) for r in rows for c in r.get("concurrency", {}).get("levels", {})})
    head = " | ".join(f"c={c}: p50/p99 ms, lookups/s" for c in levels)
    out = [f"| entries | run | {head} | load |", "|---|---|" + "---|" * len(levels) + "---|"]
    for r in rows:
        for phase, run in (("concurrency", "1"), ("concurrency_after_restart", "2")):
            cc = r.get(phase)
            if not cc:
                continue
            cells = []
            for c in levels:
                v = cc["levels"].get(str(c))
                cells.append(f"{_pp(v)}, {v['lookups_per_s']}" if v else "–")
            out.append(f"| {r['n']:,} | {run} | {' | '.join(cells)} | {cc['load']} |")
    return "\n".join(out)


def plot(rows: list[Row], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    rows = [r for r in rows if "lookup" in r]
    ns = [r["n"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.4))
    ax = axes[0]
    # The steady state: serving after a restart from a snapshot (both runs are tabulated).
    lk = [r.get("lookup_after_restart") or r["lookup"] for r in rows]
    for kind, label in (("hnsw_big_group_cpu", "index search, CPU"),
                        ("hnsw_big_group", "index search, wall"),
                        ("semantic_big_group", "semantic lookup"), ("exact", "exact lookup"),
                        ("miss_big_group", "miss")):  # fmt: skip
        for q, style in (("p50_ms", "-o"), ("p99_ms", "--x")):
            ys = [x[kind][q] if kind in x else float("nan") for x in lk]
            ax.plot(ns, ys, style, label=f"{label} {q[:3]}")
    ax.axhline(2.0, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="entries", ylabel="ms",
           title="Lookup latency, single client (2 ms: issue #8)")  # fmt: skip
    ax.legend(fontsize=7)
    ax = axes[1]
    for key, label in (("restart_snapshot", "after restart from snapshot"),
                       ("restart_rebuild", "after rebuild")):  # fmt: skip
        ax.plot(ns, [r[key]["bytes_per_entry"] for r in rows], "-o", label=label)
    ax.set(xscale="log", xlabel="entries", ylabel="RSS bytes / entry", title="Memory")
    ax.legend(fontsize=7)
    ax = axes[2]
    ax.plot(ns, [r["restart_snapshot"]["seconds"] for r in rows], "-o", label="restart, snapshot")
    ax.plot(ns, [r["restart_rebuild"]["seconds"] for r in rows], "-o", label="restart, rebuild")
    ax.plot(ns, [r["snapshot"]["total_s"] for r in rows], "-s", label="snapshot write")
    ax.plot(ns, [r["snapshot"]["blocked_s"] for r in rows], "-^", label="snapshot: index held")
    ax.axhline(60.0, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="entries", ylabel="s", title="Restart, snapshot")
    ax.legend(fontsize=7)
    ax = axes[3]
    for r in rows:
        lv = r["concurrency"]["levels"]
        cs = sorted(int(c) for c in lv)
        ax.plot(cs, [lv[str(c)]["p99_ms"] for c in cs], "--x", label=f"{r['n']:,} p99")
        ax.plot(cs, [lv[str(c)]["p50_ms"] for c in cs], "-o", label=f"{r['n']:,} p50")
    ax.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms",
           title="Semantic lookup under concurrency")  # fmt: skip
    ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"cachegate cache scale ({machine()})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    p.add_argument("--max-entries", type=int, default=1_000_000, help="skip larger sizes")
    p.add_argument("--out", type=Path, required=True, help="per-size JSON lines and logs")
    p.add_argument("--png", type=Path, help="default: <out>/scale.png")
    p.add_argument("--reuse", action="store_true", help="use kept n<size>.jsonl, run the rest")
    p.add_argument("--timeout-s", type=float, default=5400.0, help="per size")
    args, extra = p.parse_known_args(argv)  # the rest goes to bench.cache_scale
    sizes = [n for n in args.sizes if n <= args.max_entries]
    if not sizes:
        p.error(f"no size <= --max-entries {args.max_entries}")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    rows = []
    for n in sizes:
        kept = args.out / f"n{n}.jsonl"
        if not (args.reuse and kept.exists()):
            print(f"running {n:,} entries ...", file=sys.stderr, flush=True)
            run_size(n, args.out, extra, args.timeout_s)
        rows.append(read_size(kept))
    print(table(rows), latency_table(rows), concurrency_table(rows), sep="\n\n")
    (args.out / "scale.json").write_text(json.dumps(rows, indent=1))
    png = args.png or args.out / "scale.png"
    if plot(rows, png):
        print(f"plot: {png}")


if __name__ == "__main__":
    main()
