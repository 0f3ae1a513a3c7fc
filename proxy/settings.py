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
from proxy.wiring import check_domain

ENV_PREFIX = "CACHEGATE_"
CONFIG_ENV = "CACHEGATE_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(300.0, gt=0)
    #: How long an idle keep-alive connection stays open. Longer than the idle timeout
    #: of whatever connects (httpx and the openai client: 5 s; load balancers: often
    #: 60 s), so the client always closes first: a server closing at the same moment
    #: as the client reuses the connection makes that request fail with a reset.
    keep_alive_s: float = Field(75.0, gt=0)


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


class TenantLimitSettings(_Strict):
    """Usage limits of one tenant or one API key (None: unset); see ``proxy.limits``.
    Its input bounds can only lower the deployment's (``limits.max_*``)."""

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    budget_dollars: float | None = Field(None, ge=0)
    max_messages: int | None = Field(None, ge=1)
    max_total_chars: int | None = Field(None, ge=1)
    max_tokens_ceiling: int | None = Field(None, ge=1)


class LimitSettings(_Strict):
    """Input bounds, each refused with a 400 naming the parameter, and usage limits
    (requests/tokens per minute, a cost budget per period), each refused with a 429."""

    max_messages: int = Field(512, ge=1)
    max_total_chars: int = Field(400_000, ge=1)
    max_tokens_ceiling: int | None = Field(None, ge=1)
    # Defaults for every tenant; ``tenants`` overrides them per tenant (field by field).
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    budget_dollars: float | None = Field(None, ge=0)
    budget_period_s: float = Field(86_400.0, ge=60)
    sync_interval_s: float = Field(0.5, gt=0, le=60)
    tenants: dict[str, TenantLimitSettings] = Field(default_factory=dict)
    # Every API key's limits (on top of its tenant's), and per key id
    # ("cfg:<key_env>" for a configuration-file key, "key_..." for an API-made one).
    key_defaults: TenantLimitSettings = TenantLimitSettings()
    keys: dict[str, TenantLimitSettings] = Field(default_factory=dict)


class TenantPrivacySettings(_Strict):
    """What is stored for one tenant; unset fields take ``privacy``'s defaults."""

    cache: bool | None = None
    request_log: bool | None = None
    store_prompts: bool | None = None


class PrivacySettings(_Strict):
    """What cachegate stores per tenant (see ``proxy.privacy``)."""

    cache: bool = True  # off: the tenant's requests neither read nor write the cache
    request_log: bool = False  # the request log for router training
    store_prompts: bool = False  # prompt text in the request log
    log_retention_s: float = Field(30 * 86_400.0, gt=0)
    log_queue_size: int = Field(10_000, ge=1)
    tenants: dict[str, TenantPrivacySettings] = Field(default_factory=dict)


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
    # Idle pooled connections are closed after this; keep it below the server's
    # keep-alive timeout (uvicorn, so vLLM and SGLang: 5 s; llama.cpp: 5 s).
    keepalive_s: float = Field(4.0, gt=0)
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
    max_wait_ms: float = Field(0.0, ge=0, le=1000)
    # One ONNX Runtime thread measured 2x faster than two on the 2-core machine,
    # single texts and batches alike (the event loop needs the other core); 0 = ORT's default.
    threads: int = Field(1, ge=0)
    # int8 matrix products (onnx embedder on CPU, extra `int8`): ~2x less CPU per text,
    # vectors within cosine ~0.99 of the float ones (backends.quantize).
    quantize: Literal["none", "int8"] = "none"


class PolicySettings(_Strict):
    """Per-category cache policy; unset fields inherit the built-in default for the category."""

    enabled: bool | None = None
    similarity_threshold: float | None = None
    equivalence_threshold: float | None = None
    ttl_seconds: float | None = None
    max_entries: int | None = None
    eviction: Literal["lru", "lfu", "fifo"] | None = None
    cache_streams: bool | None = None
    cache_tool_calls: bool | None = None
    sampling_params: tuple[str, ...] | None = None
    threshold_floor: float | None = None
    ttl_max_factor: float | None = None
    equivalence_floor: float | None = None

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class CoalesceSettings(_Strict):
    """Single-flight for misses (cache.inflight): a request equivalent to one whose
    backend call is in flight waits for that answer instead of calling the backend."""

    enabled: bool = True
    # A streaming client that follows waits for the whole answer before its first
    # token, instead of its own call's time to first token: off unless asked for.
    streams: bool = False
    # The longest a follower waits from the start of the leader's call (then it goes
    # alone); the backends' default timeout_s.
    max_wait_s: float = Field(60.0, gt=0, allow_inf_nan=False)


class CacheSettings(_Strict):
    enabled: bool = True
    equivalence_check: bool = True
    candidates: int = Field(5, ge=1, le=100)
    write_queue_size: int = Field(10_000, ge=1)
    sync_interval_s: float = Field(0.25, gt=0)
    sweep_interval_s: float = Field(5.0, gt=0)
    # With storage.snapshot_dir: save the index this often, so a restart after a crash
    # reads only the entries written since (0: only at shutdown).
    snapshot_interval_s: float = Field(300.0, ge=0, allow_inf_nan=False)
    default_policy: PolicySettings = PolicySettings()
    policies: dict[str, PolicySettings] = Field(default_factory=dict)
    coalesce: CoalesceSettings = CoalesceSettings()
    # The store records which embedder wrote its vectors; when another one starts:
    # refuse to start, delete the entries and adopt the new embedder's space, or embed
    # the stored request texts again (in the background, serving without the cache).
    on_embedder_change: Literal["refuse", "flush", "reembed"] = "refuse"


class CategorySettings(_Strict):
    """A category defined by examples (a built-in name extends that category)."""

    name: str
    description: str = ""
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


class ClassifierSettings(_Strict):
    enabled: bool = True
    min_confidence: float | None = Field(None, ge=0, le=1)  # None: the classifier's default


class ExamplesSettings(_Strict):
    """In-context examples for the small model (IC-Cache)."""

    enabled: bool = True
    k: int = Field(3, ge=0, le=16)
    token_budget: int = Field(1024, ge=0)
    similarity_floor: float = Field(0.6, ge=-1, le=1)
    per_category: dict[str, bool] = Field(default_factory=dict)


class JudgeSettings(_Strict):
    """The sampled judge (off by default; each judged answer costs a large-model call):
    see ``router.judge``. ``records_path`` is required when enabled."""

    enabled: bool = False
    sample_rate: float = Field(0.0, ge=0, le=1)
    method: Literal["exact", "normalised", "numeric", "embedding"] = "normalised"
    min_similarity: float = Field(0.9, ge=-1, le=1)
    numeric_tolerance: float = Field(1e-6, ge=0)
    max_in_flight: int = Field(4, ge=1, le=1024)
    timeout_s: float = Field(60.0, gt=0)
    records_path: Path | None = None


class RouterSettings(_Strict):
    enabled: bool = True
    kind: str = "blend"
    threshold: float | None = Field(None, ge=0, le=1)
    artifact: Path | None = None
    category_overrides: dict[str, Literal["small", "large"]] = Field(default_factory=dict)
    examples: ExamplesSettings = ExamplesSettings()
    judge: JudgeSettings = JudgeSettings()
    # How often a replica re-reads example utilities other replicas updated (SQL).
    utility_refresh_s: float = Field(5.0, gt=0, le=3600)


class AdaptiveSettings(_Strict):
    """Load-adaptive policies: categories with bounds relax while a tier is loaded."""

    enabled: bool = True
    interval_s: float = Field(1.0, gt=0, le=60)
    elevated_at: float = Field(0.8, gt=0)
    overloaded_at: float = Field(1.0, gt=0)
    hysteresis: float = Field(0.15, ge=0)
    min_dwell_s: float = Field(3.0, ge=0)
    step: float = Field(0.25, gt=0, le=1)
    equivalence_drop: float = Field(0.3, ge=0, le=1)


class Settings(_Strict):
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    backends: tuple[BackendSettings, ...] = Field(min_length=1)
    circuit: CircuitSettings = CircuitSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    cache: CacheSettings = CacheSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    categories: tuple[CategorySettings, ...] = ()
    router: RouterSettings = RouterSettings()
    adaptive: AdaptiveSettings = AdaptiveSettings()
    privacy: PrivacySettings = PrivacySettings()

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
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    # Policies, categories and router settings are validated by their own packages;
    # building them once here makes a bad value fail at load, naming its key.
    check_domain(settings)
    return settings


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
