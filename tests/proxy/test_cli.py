"""The ``cachegate`` command: migrate, router train/calibrate, examples refresh, bad config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from proxy.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "router" / "fixtures" / "tiny_outcomes.jsonl"


def config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "deploy" / "config" / "default.yaml").read_text())
    cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_migrate_creates_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--config", str(config(tmp_path))]) == 0
    assert (tmp_path / "cli.db").exists()
    assert "latest schema" in capsys.readouterr().out


def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends:\n  - {name: s, tier: medium, base_url: 'http://h/v1', model: m}\n")
    assert main(["migrate", "--config", str(bad)]) == 2
    assert "backends.0.tier" in capsys.readouterr().err


def test_router_train_then_calibrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "router.npz"
    assert main(["router", "train", "--data", str(TINY), "--out", str(out)]) == 0
    assert out.exists()
    prompts = tmp_path / "traffic.jsonl"
    rows = [json.loads(line) for line in TINY.read_text().splitlines() if line.strip()]
    prompts.write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in rows))
    capsys.readouterr()
    code = main(
        ["router", "calibrate", "--config", str(config(tmp_path)), "--data", str(prompts),
         "--artifact", str(out), "--large-share", "0.3"]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    share = float(re.search(r"sends ([0-9.]+)% to large", text).group(1))  # type: ignore[union-attr]
    assert abs(share - 30) <= 100 / len(rows) + 1e-9
    assert "threshold:" in text


def test_calibrate_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt field"}\n')
    code = main(
        ["router", "calibrate", "--config", str(config(tmp_path)), "--data", str(bad),
         "--large-share", "0.3"]
    )  # fmt: skip
    assert code == 2
    assert "prompt" in capsys.readouterr().err


def test_examples_refresh_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples", "refresh", "--config", str(config(tmp_path)), "--dry-run"]) == 0
    assert "would prune 0 entries" in capsys.readouterr().out
