"""Query categories: text + request vector -> category with confidence.

Takes plain values (the vector the embedder already computed, the texts) and
knows nothing about HTTP. See the README section "Query categories".
"""

from classifier.artifact import Corpus, HeadArtifact, load_artifact, save_artifact
from classifier.classifier import Classifier, Embed
from classifier.definitions import (
    CategoryDef,
    category_from_mapping,
    dump_definitions,
    load_default_definitions,
    load_definitions,
    merge_definitions,
    parse_definitions,
    validate_definitions,
)
from classifier.errors import (
    ArtifactError,
    ClassifierError,
    DefinitionError,
    InputError,
    UnknownCategoryError,
)
from classifier.evaluation import CategoryScore, Evaluation, confusion, evaluate
from classifier.head import HeadConfig
from classifier.scoring import Classification
from classifier.signals import Signals, compute_signals

__all__ = [
    "ArtifactError",
    "CategoryDef",
    "CategoryScore",
    "Classification",
    "Classifier",
    "ClassifierError",
    "Corpus",
    "DefinitionError",
    "Embed",
    "Evaluation",
    "HeadArtifact",
    "HeadConfig",
    "InputError",
    "Signals",
    "UnknownCategoryError",
    "category_from_mapping",
    "compute_signals",
    "confusion",
    "dump_definitions",
    "evaluate",
    "load_artifact",
    "load_default_definitions",
    "load_definitions",
    "merge_definitions",
    "parse_definitions",
    "save_artifact",
    "validate_definitions",
]
