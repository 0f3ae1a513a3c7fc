from __future__ import annotations

from pathlib import Path

import pytest

from proxy.errors import SettingsError
from proxy.settings import Settings, load_settings, settings_from_mapping

ROOT = Path(__file__).resolve().parents[2]

BACKEND = {"name": "small", "tier": "small", "base_url": "http://127.0.0.1:9001/v1", "model": "m"}


@pytest.mark.parametrize("name", ["default.yaml", "openai.yaml", "vllm.yaml"])
def test_shipped_configs_load(name: str) -> None:
    settings = load_settings(ROOT / "deploy" / "config" / name, env={})
    assert isinstance(settings, Settings)
    assert {b.tier for b in settings.backends} == {"small", "large"}


def test_error_names_the_bad_key() -> None:
    bad = {"backends": [{**BACKEND, "tier": "medium"}]}
    with pytest.raises(SettingsError, match=r"backends\.0\.tier"):
        settings_from_mapping(bad)
    with pytest.raises(SettingsError, match=r"server\.port"):
        settings_from_mapping({"server": {"port": 70000}, "backends": [BACKEND]})
    with pytest.raises(SettingsError, match=r"server\.prot"):
        settings_from_mapping({"server": {"prot": 8080}, "backends": [BACKEND]})
    with pytest.raises(SettingsError, match=r"storage\.url"):
        settings_from_mapping({"storage": {"url": "mysql://x"}, "backends": [BACKEND]})
    with pytest.raises(SettingsError, match=r"server\.keep_alive_s"):
        settings_from_mapping({"server": {"keep_alive_s": 0}, "backends": [BACKEND]})


def test_at_least_one_backend_and_unique_aliases() -> None:
    with pytest.raises(SettingsError, match="backends"):
        settings_from_mapping({})
    twice = {"backends": [BACKEND, {**BACKEND, "model": "other"}]}
    with pytest.raises(SettingsError, match="used twice"):
        settings_from_mapping(twice)


def test_env_overrides_are_typed() -> None:
    env = {"CACHEGATE_SERVER__PORT": "9100", "CACHEGATE_BACKENDS__0__TIMEOUT_S": "2.5"}
    s = settings_from_mapping({"backends": [BACKEND]}, env)
    assert s.server.port == 9100
    assert s.backends[0].timeout_s == 2.5
    with pytest.raises(SettingsError, match=r"server\.port"):
        settings_from_mapping({"backends": [BACKEND]}, {"CACHEGATE_SERVER__PORT": "many"})


def test_config_file_from_env_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("backends:\n  - {name: s, tier: small, base_url: 'http://h/v1', model: m}\n")
    assert load_settings(env={"CACHEGATE_CONFIG": str(path)}).backends[0].name == "s"
    path.write_text("backends: [\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(path, env={})
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", env={})


def test_keys_required_off_loopback_unless_explicit() -> None:
    loop = settings_from_mapping({"backends": [BACKEND]})
    assert loop.keys_required is False
    public = settings_from_mapping({"server": {"host": "0.0.0.0"}, "backends": [BACKEND]})
    assert public.keys_required is True
    explicit = settings_from_mapping(
        {"server": {"host": "0.0.0.0"}, "auth": {"require_keys": False}, "backends": [BACKEND]}
    )
    assert explicit.keys_required is False
