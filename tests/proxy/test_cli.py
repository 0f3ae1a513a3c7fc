"""The ``cachegate`` command: migrate, router train/calibrate, examples refresh, bad config."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from cache import VectorSpace
from proxy.cli import main
from tests.stack import free_port

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


def _serve_config(tmp_path: Path, **embedder: str) -> Path:
    cfg = yaml.safe_load(config(tmp_path).read_text())
    cfg["server"] = {"host": "127.0.0.1", "port": free_port()}
    for backend in cfg["backends"]:
        backend["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    cfg["embedder"] = embedder
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _claim_store_for_another_model(tmp_path: Path, cfg: Path) -> None:
    assert main(["migrate", "--config", str(cfg)]) == 0
    other = VectorSpace("some-other-model", np.eye(8, 384, dtype=np.float32))
    with sqlite3.connect(tmp_path / "cli.db") as db:
        db.execute(
            "INSERT INTO cache_meta (key, value, updated_at) VALUES ('vector_space', ?, 0)",
            (other.encode(),),
        )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing model", "cannot load ONNX model"),
        ("store of another model", "holds vectors of embedder 'some-other-model'"),
    ],
)
def test_serve_reports_a_startup_error_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    if case == "missing model":
        cfg = _serve_config(tmp_path, model_path=str(tmp_path / "nowhere.onnx"))
    else:
        cfg = _serve_config(tmp_path)
        _claim_store_for_another_model(tmp_path, cfg)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--config", str(cfg)])
    assert exited.value.code == 3  # uvicorn's status for a failed start-up
    logged = capsys.readouterr().err  # uvicorn's own handler writes to stderr
    assert "cachegate cannot start: " in logged and expected in logged
    assert "Traceback" not in logged
