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
from router.errors import RouterArtifactError, RouterConfigError, RouterDataError, RouterError
from router.examples import ExampleCandidate, ExampleConfig, build_messages, select_examples
from router.fit import FitParams
from router.metrics import RoutingQuality, routing_quality
from router.records import RouteRecord, read_records, record_from_log
from router.router import Router, load_router, untrained_router
from router.scorers import SCORERS, Scorer
from router.train import TrainReport, estimate_tokens, train_router
from router.types import RouteDecision, RouteFeatures, Tier, TierLoad
from router.utility import ExampleOutcome, RefreshResult, Utility, UtilityModel, refresh

__all__ = [
    "SCORERS",
    "ExampleCandidate",
    "ExampleConfig",
    "ExampleOutcome",
    "FitParams",
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
    "Tier",
    "TierLoad",
    "TrainReport",
    "Utility",
    "UtilityModel",
    "build_messages",
    "calibrate_for_budget",
    "calibrate_threshold",
    "estimate_tokens",
    "large_share_at",
    "load_router",
    "read_records",
    "record_from_log",
    "refresh",
    "routing_quality",
    "select_examples",
    "share_for_budget",
    "train_router",
    "untrained_router",
]
