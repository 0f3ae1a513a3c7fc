"""The learned small/large router and in-context example selection.

Takes plain values (vectors, categories, load views, cached candidates) and
never imports ``cache``, ``proxy`` or aiohttp; ``proxy`` wires it in.
"""

from router.calibrate import (
    calibrate_for_budget,
    calibrate_threshold,
    large_share_at,
    share_for_budget,
)
from router.config import RouterConfig
from router.errors import (
    JudgeUnavailable,
    RouterArtifactError,
    RouterConfigError,
    RouterDataError,
    RouterError,
    UtilityStoreUnavailable,
)
from router.examples import ExampleCandidate, ExampleConfig, build_messages, select_examples
from router.fit import FitArrays, FitParams, FitResult, fit_model
from router.judge import (
    Judge,
    JudgeCase,
    JudgeConfig,
    JudgeCounts,
    JudgeOutcome,
    Verdict,
    compare,
    final_answer,
    final_number,
)
from router.metrics import RoutingQuality, routing_quality
from router.model import LearnedModel
from router.records import RouteRecord, read_records, record_from_log
from router.router import Router, load_router, router_from_model, untrained_router
from router.scorers import SCORERS, Scorer
from router.train import TrainReport, arrays_from_records, estimate_tokens, train_router
from router.types import RouteDecision, RouteFeatures, Tier, TierLoad
from router.utility import ExampleOutcome, RefreshResult, Utility, UtilityModel, refresh
from router.utility_store import SharedUtilities

__all__ = [
    "SCORERS",
    "ExampleCandidate",
    "ExampleConfig",
    "ExampleOutcome",
    "FitArrays",
    "FitParams",
    "FitResult",
    "Judge",
    "JudgeCase",
    "JudgeConfig",
    "JudgeCounts",
    "JudgeOutcome",
    "JudgeUnavailable",
    "LearnedModel",
    "RefreshResult",
    "RouteDecision",
    "RouteFeatures",
    "RouteRecord",
    "Router",
    "RouterArtifactError",
    "RouterConfig",
    "RouterConfigError",
    "RouterDataError",
    "RouterError",
    "RoutingQuality",
    "Scorer",
    "SharedUtilities",
    "Tier",
    "TierLoad",
    "TrainReport",
    "Utility",
    "UtilityModel",
    "UtilityStoreUnavailable",
    "Verdict",
    "arrays_from_records",
    "build_messages",
    "calibrate_for_budget",
    "calibrate_threshold",
    "compare",
    "estimate_tokens",
    "final_answer",
    "final_number",
    "fit_model",
    "large_share_at",
    "load_router",
    "read_records",
    "record_from_log",
    "refresh",
    "router_from_model",
    "routing_quality",
    "select_examples",
    "share_for_budget",
    "train_router",
    "untrained_router",
]
