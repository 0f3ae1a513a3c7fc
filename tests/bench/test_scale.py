"""The scale benchmark end to end on tiny sizes: one command runs each size in its own
process (bulk fill, rebuild, lookups, concurrency, snapshot, restart after a simulated
crash) and tabulates; ``--max-entries`` drops the larger sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.scale import main


def test_scale_runs_each_size_and_tabulates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scale"
    main(["--sizes", "300", "600", "100000", "--max-entries", "600", "--out", str(out),
          "--vectors", "random", "--queries", "20", "--concurrency", "1", "4",
          "--writes", "20"])  # fmt: skip
    printed = capsys.readouterr().out
    rows = json.loads((out / "scale.json").read_text())
    assert [r["n"] for r in rows] == [300, 600]  # 100k is over --max-entries
    assert not (out / "n100000.jsonl").exists()
    for r in rows:
        n = r["n"]
        assert r["restart_rebuild"]["entries"] == n
        # The restart after the simulated crash comes from the snapshot taken while serving.
        assert r["restart_snapshot"]["entries"] == n and r["snapshot"]["entries"] == n
        for phase in ("lookup", "lookup_after_restart"):
            assert r[phase]["exact_hit_rate"] == 1.0
            assert r[phase]["semantic_recall"] == 1.0  # exact search at this size
        assert set(r["concurrency"]["levels"]) == {"1", "4"}
        assert r["concurrency"]["levels"]["4"]["count"] == 20
        assert f"| {n:,} |" in printed
    # Reuse: the kept runs are tabulated again without running.
    (out / "n300.log").unlink()
    main(["--sizes", "300", "--out", str(out), "--reuse"])
    assert not (out / "n300.log").exists()
