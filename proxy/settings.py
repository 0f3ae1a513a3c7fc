"""cachegate's settings: one typed object from a YAML file plus env overrides.

Load order: the YAML file (``--config`` or ``CACHEGATE_CONFIG``), then
``CACHEGATE_<SECTION>__<KEY>=value`` environment overrides (values parsed as
YAML scalars, so ``CACHEGATE_SERVER__PORT=9000`` is an int), then validation.
Every validation error names the dotted key that is wrong.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from proxy.errors import SettingsError

ENV_PREFIX = "CACHEGATE_"
CONFIG_ENV = "CACHEGATE_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(300.0, gt=0)


class StorageSettings(_Strict):
    url: str = "sqlite+aiosqlite:///./cachegate.db"
    snapshot_dir: Path | None = None

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v


class ApiKeySettings(_Strict):
    """A client key from config: its secret comes from an env var, never the file."""

    key_env: str
    tenant: str = Field(min_length=1, max_length=128)


class AuthSettings(_Strict):
    admin_key_env: str = "CACHEGATE_ADMIN_KEY"
    # None: keys are required unless the server binds to a loopback address.
    require_keys: bool | None = None
    keys: tuple[ApiKeySettings, ...] = ()


class PriceSettings(_Strict):
    input_per_1k: float = Field(0.0, ge=0)
    output_per_1k: float = Field(0.0, ge=0)


class BackendSettings(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    tier: Literal["small", "large"]
    base_url: str
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    price: PriceSettings = PriceSettings()
    max_concurrency: int = Field(64, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float | None = Field(None, gt=0)
    retries: int = Field(2, ge=0, le=10)
    ttft_slo_s: float = Field(2.0, gt=0)
    aliases: tuple[str, ...] = ()
    # Start cachegate's simulated backend with this profile on base_url's port
    # inside the proxy process (the embedded default; never for real backends).
    simulate: Literal["small", "large"] | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")


class CircuitSettings(_Strict):
    failure_threshold: int = Field(5, ge=1)
    cooldown_s: float = Field(10.0, gt=0)


class EmbedderSettings(_Strict):
    kind: Literal["onnx", "sentence-transformers"] = "onnx"
    model_path: Path | None = None
    tokenizer_path: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_tokens: int = Field(256, ge=8, le=512)
    max_batch: int = Field(32, ge=1, le=1024)
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    threads: int = Field(0, ge=0)


class Settings(_Strict):
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    auth: AuthSettings = AuthSettings()
    backends: tuple[BackendSettings, ...] = Field(min_length=1)
    circuit: CircuitSettings = CircuitSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    # Sections owned by other packages are validated by them at start-up.
    cache: dict[str, Any] = Field(default_factory=dict)
    categories: dict[str, Any] = Field(default_factory=dict)
    router: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = {"auto"}
        for b in self.backends:
            for name in (b.name, b.model, *b.aliases):
                if name in seen and name != b.model:
                    raise ValueError(f"backend name or alias {name!r} is used twice (or is 'auto')")
                seen.add(name)
        return self

    @property
    def keys_required(self) -> bool:
        if self.auth.require_keys is not None:
            return self.auth.require_keys
        return not _is_loopback(self.server.host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV or "__" not in key:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node: Any = data
        for part in path[:-1]:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise SettingsError(f"{key}: cannot set {'.'.join(path)}")
        leaf = path[-1]
        value = yaml.safe_load(raw) if raw != "" else None
        if isinstance(node, list) and leaf.isdigit() and int(leaf) < len(node):
            node[int(leaf)] = value
        elif isinstance(node, dict):
            node[leaf] = value
        else:
            raise SettingsError(f"{key}: cannot set {'.'.join(path)}")
    return data


def settings_from_mapping(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> Settings:
    merged = _apply_env(dict(yaml.safe_load(yaml.safe_dump(dict(data))) or {}), env or {})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise SettingsError(f"cannot read config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"config {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"config {path} must be a mapping at the top level")
        data = loaded or {}
    return settings_from_mapping(data, env)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, loaded on first use (never at import)."""
    return load_settings()
