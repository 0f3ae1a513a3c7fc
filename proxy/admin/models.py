"""Request and response models of the admin API (typed, so they appear in OpenAPI).

Request models forbid unknown fields, so a typo is a 422 naming the field rather
than a silent no-op. Value ranges are checked by the owning package's own type
(``cache.CategoryPolicy``, ``router.RouterConfig`` ...), whose error names the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from backends.jsontext import strings

Tier = Literal["small", "large"]
NAME = r"^[A-Za-z0-9_.:\-]{1,64}$"
MAX_OFFSET = 1_000_000_000  # SQL integers; paging past this is a client bug


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # No admin value has a use for NUL, and PostgreSQL's text type cannot store it:
        # refused here with a clear message instead of failing as a store outage.
        if any("\x00" in text for text in strings(data)):
            raise ValueError("values must not contain NUL characters (\\u0000)")
        return data


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorDetail


# -- policies ----------------------------------------------------------------------------


class PolicyValues(BaseModel):
    enabled: bool
    similarity_threshold: float
    equivalence_threshold: float | None
    ttl_seconds: float
    max_entries: int
    eviction: Literal["lru", "lfu", "fifo"]
    cache_streams: bool
    cache_tool_calls: bool = True
    sampling_params: list[str]
    threshold_floor: float | None
    ttl_max_factor: float
    equivalence_floor: float | None = None
    ttl_stretch: float = 1.0  # set by load adaptation on the effective policy only


class PolicyFields(_Request):
    """Fields to set; a field left out keeps its configured (PUT) or current (PATCH) value.
    ``equivalence_threshold``, ``threshold_floor`` and ``equivalence_floor`` accept ``null``."""

    enabled: StrictBool | None = None
    similarity_threshold: float | None = None
    equivalence_threshold: float | None = None
    ttl_seconds: float | None = None
    max_entries: StrictInt | None = None
    eviction: Literal["lru", "lfu", "fifo"] | None = None
    cache_streams: StrictBool | None = None
    cache_tool_calls: StrictBool | None = None
    sampling_params: list[str] | None = None
    threshold_floor: float | None = None
    ttl_max_factor: float | None = None
    equivalence_floor: float | None = None


class PolicyCreate(PolicyFields):
    category: str = Field(pattern=NAME)


class PolicyView(BaseModel):
    object: Literal["cache.policy"] = "cache.policy"
    category: str
    source: Literal["configured", "admin"]
    overrides: dict[str, Any]
    configured: PolicyValues
    effective: PolicyValues
    updated_at: float | None = None
    updated_by: str | None = None


class PolicyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PolicyView]
    default: PolicyValues


# -- audit -------------------------------------------------------------------------------


class AuditItem(BaseModel):
    id: int
    at: float
    actor: str
    request_id: str | None
    kind: str
    action: str
    target: str
    old: Any
    new: Any


class AuditPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditItem]
    total: int
    offset: int
    limit: int


# -- categories --------------------------------------------------------------------------


class CategorySummary(BaseModel):
    name: str
    description: str
    example_count: int
    keywords: list[str]
    patterns: list[str]


class CategoryDetail(CategorySummary):
    examples: list[str]


class CategoryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CategorySummary]
    fallback: str
    min_confidence: float


class CategoryCreate(_Request):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=2000)
    examples: list[str] = Field(min_length=1, max_length=10_000)
    keywords: list[str] = Field(default_factory=list, max_length=1000)
    patterns: list[str] = Field(default_factory=list, max_length=1000)


class ExamplesBody(_Request):
    examples: list[str] = Field(min_length=1, max_length=10_000)


class RetrainBody(_Request):
    holdout: bool = Field(
        False, description="score on a held-out 20 % (slower) instead of training data"
    )


class CategoryScoreView(BaseModel):
    name: str
    precision: float
    recall: float
    f1: float
    support: int


class EvaluationView(BaseModel):
    kind: str
    examples: int
    accuracy: float
    macro_f1: float
    fit_seconds: float
    per_category: list[CategoryScoreView]


class CategoryChange(BaseModel):
    category: CategoryDetail | None
    evaluation: EvaluationView


# -- cache -------------------------------------------------------------------------------


class CacheStatRow(BaseModel):
    category: str
    tenant: str
    entries: int
    bytes: int
    hits: int
    misses: int
    hit_rate: float | None
    evictions: int
    expirations: int


class CacheStats(BaseModel):
    object: Literal["cache.stats"] = "cache.stats"
    data: list[CacheStatRow]
    total: CacheStatRow
    store_available: bool
    serving: bool = Field(
        description="false once another replica gave the store another embedder's vectors "
        "(this replica then bypasses the cache)"
    )
    counted_since: float = Field(description="hits/misses/evictions/expirations count since then")


class EntryView(BaseModel):
    id: int
    tenant: str
    model_alias: str
    category: str
    request_text: str
    backend: str
    tier: Tier
    prompt_tokens: int
    completion_tokens: int
    created_at: float
    expires_at: float
    last_hit_at: float | None
    hit_count: int
    feedback_score: float | None
    utility: float
    example_ok: bool  # false: a follow-up or agent step, never an in-context example


class EntryPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[EntryView]
    offset: int
    limit: int


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


class SeedBody(_Request):
    """``POST /admin/cache/entries``: an answer to store for a request, as if a backend
    had given it."""

    tenant: str = Field(min_length=1, max_length=255)
    request: dict[str, Any] = Field(
        description="the request it answers: an OpenAI chat completions body (messages) "
        "or a completions body (prompt), with the model alias clients will ask for"
    )
    answer: str = Field(min_length=1, max_length=200_000)
    category: str | None = Field(
        None, pattern=NAME, description="file it under this category, not the classifier's"
    )


class Seeded(BaseModel):
    object: Literal["cache.entry"] = "cache.entry"
    id: int
    tenant: str
    category: str
    request_text: str
    replaced: int | None = Field(description="the entry stored for the same text it replaced")


class FlushBody(_Request):
    category: str | None = Field(None, min_length=1, max_length=64)
    tenant: str | None = Field(None, min_length=1, max_length=255)
    all: bool = Field(False, description="required to flush everything (no category/tenant)")
    dry_run: bool = False


class FlushResult(BaseModel):
    object: Literal["cache.flush"] = "cache.flush"
    count: int
    dry_run: bool
    category: str | None
    tenant: str | None


# -- router and backends -----------------------------------------------------------------


class ExamplesView(BaseModel):
    enabled: bool
    k: int
    token_budget: int
    similarity_floor: float
    per_category: dict[str, bool]


class RouterView(BaseModel):
    object: Literal["router"] = "router"
    enabled: bool
    kind: str
    threshold: float | None = Field(description="the threshold in use (scores >= it go small)")
    configured_threshold: float | None
    target_large_share: float | None
    category_overrides: dict[str, Tier]
    examples: ExamplesView
    recent_scores: int
    recent_large_share: float | None


class RouterPatch(_Request):
    """Set ``threshold`` or ``target_large_share`` (calibrated on recent scores), not both."""

    threshold: float | None = None
    target_large_share: float | None = None
    category_overrides: dict[str, Tier] | None = None


class RecalibrateBody(_Request):
    target_large_share: float | None = Field(None, description="defaults to the target set earlier")


class BackendView(BaseModel):
    name: str
    tier: Tier
    model: str
    circuit: str
    healthy: bool
    overloaded: bool
    in_flight: int
    max_concurrency: int
    calls: int
    errors: int
    ewma_ttft_s: float
    ewma_latency_s: float
    ewma_error_rate: float
    ewma_throttle_rate: float
    cost: float


class BackendList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BackendView]


# -- keys --------------------------------------------------------------------------------


class KeyCreate(_Request):
    tenant: str = Field(min_length=1, max_length=128)
    name: str = Field("", max_length=128)


class KeyView(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    tenant: str
    name: str
    created_at: float
    created_by: str
    revoked_at: float | None
    revoked: bool


class KeyCreated(KeyView):
    key: str = Field(description="the secret; shown only in this response")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyView]
