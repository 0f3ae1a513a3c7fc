"""Category definitions: a name, a description, example utterances and hints.

Definitions enter from config, from the admin API and from the committed
package data; they are validated here, once, so the rest of the classifier can
trust them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from classifier.errors import DefinitionError
from classifier.signals import TextView

_ONE_TOKEN = re.compile(r"[a-z0-9_+#']+")
PATTERN_CHARS = 400
_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
DEFAULT_FALLBACK = "general"
DEFAULT_DEFINITIONS_FILE = "default_categories.yaml"


@dataclass(frozen=True)
class CategoryDef:
    """One category: ``examples`` train the head, ``keywords``/``patterns`` are cheap hints.

    ``keywords`` match case-insensitively on word boundaries; ``patterns`` are
    Python regular expressions searched case-insensitively.
    """

    name: str
    description: str = ""
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    compiled: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)
    _words: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _phrases: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise DefinitionError(
                f"category name must match {_NAME.pattern} (lower-case, no spaces), "
                f"got {self.name!r}"
            )
        if not isinstance(self.description, str):
            raise DefinitionError(f"category {self.name!r}: description must be a string")
        for attr in ("examples", "keywords", "patterns"):
            value = getattr(self, attr)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise DefinitionError(f"category {self.name!r}: {attr} must be a list of strings")
            cleaned = tuple(_clean(self.name, attr, v) for v in value)
            object.__setattr__(self, attr, tuple(dict.fromkeys(cleaned)))
        compiled = []
        for pattern in self.patterns:
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise DefinitionError(
                    f"category {self.name!r}: pattern {pattern!r} is not a valid regex: {exc}"
                ) from exc
        object.__setattr__(self, "compiled", tuple(compiled))
        # Keywords that are one word token are set lookups; others are substrings.
        lowered = [k.lower() for k in self.keywords]
        words = frozenset(k for k in lowered if _ONE_TOKEN.fullmatch(k))
        object.__setattr__(self, "_words", words)
        object.__setattr__(self, "_phrases", tuple(k for k in lowered if k not in words))

    @property
    def has_hints(self) -> bool:
        return bool(self.keywords or self.patterns)

    def hint_hits(self, text: str | TextView) -> int:
        """How many of this category's keywords and patterns occur in ``text``.

        Patterns are searched in the first and last few hundred characters only
        (instructions sit there), which keeps user regexes off the latency budget.
        """
        view = text if isinstance(text, TextView) else TextView.of(text)
        hits = len(view.vocab & self._words) + view.count_phrases(self._phrases)
        if self.compiled:
            head = (
                view.text
                if len(view.text) <= 2 * PATTERN_CHARS
                else (view.text[:PATTERN_CHARS] + "\n" + view.text[-PATTERN_CHARS // 2 :])
            )
            hits += sum(1 for rx in self.compiled if rx.search(head))
        return hits

    def extended(self, other: CategoryDef) -> CategoryDef:
        """This definition with ``other``'s examples and hints added (``other`` wins the
        description when it has one)."""
        return CategoryDef(
            name=self.name,
            description=other.description or self.description,
            examples=self.examples + other.examples,
            keywords=self.keywords + other.keywords,
            patterns=self.patterns + other.patterns,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "examples": list(self.examples),
            "keywords": list(self.keywords),
            "patterns": list(self.patterns),
        }


def _clean(name: str, attr: str, value: object) -> str:
    if not isinstance(value, str):
        raise DefinitionError(f"category {name!r}: {attr} must hold strings, got {value!r}")
    value = value.strip()
    if not value:
        raise DefinitionError(f"category {name!r}: {attr} holds an empty string")
    return value


def category_from_mapping(data: Mapping[str, Any]) -> CategoryDef:
    """A :class:`CategoryDef` from a config/JSON mapping; unknown keys are refused."""
    if not isinstance(data, Mapping):
        raise DefinitionError(f"a category definition must be a mapping, got {data!r}")
    allowed = {"name", "description", "examples", "keywords", "patterns"}
    unknown = set(data) - allowed
    if unknown:
        raise DefinitionError(f"unknown category field(s) {sorted(unknown)}; allowed: {allowed}")
    if "name" not in data:
        raise DefinitionError("category definition without a name")
    return CategoryDef(
        name=data["name"],
        description=data.get("description") or "",
        examples=tuple(data.get("examples") or ()),
        keywords=tuple(data.get("keywords") or ()),
        patterns=tuple(data.get("patterns") or ()),
    )


def validate_definitions(
    defs: Sequence[CategoryDef], fallback: str = DEFAULT_FALLBACK
) -> tuple[CategoryDef, ...]:
    """Refuse duplicate names and a fallback that is not among the categories."""
    names = [d.name for d in defs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DefinitionError(f"duplicate category name(s): {dupes}")
    if fallback not in names:
        raise DefinitionError(f"fallback category {fallback!r} is not defined (have {names})")
    if len(defs) < 2:
        raise DefinitionError("at least two categories are needed (one is the fallback)")
    return tuple(defs)


def merge_definitions(
    base: Iterable[CategoryDef],
    overrides: Iterable[CategoryDef],
    *,
    replace: Iterable[str] = (),
) -> list[CategoryDef]:
    """Config categories over the defaults.

    A config category with a default's name *extends* it (examples, keywords and
    patterns are added; a non-empty description replaces), unless its name is in
    ``replace``, in which case the config definition replaces the default
    entirely. New names are appended.
    """
    merged = {d.name: d for d in base}
    replaced = set(replace)
    seen: set[str] = set()
    for d in overrides:
        if d.name in seen:
            raise DefinitionError(f"duplicate category name in config: {d.name!r}")
        seen.add(d.name)
        if d.name in merged and d.name not in replaced:
            merged[d.name] = merged[d.name].extended(d)
        else:
            merged[d.name] = d
    return list(merged.values())


def parse_definitions(data: Any) -> list[CategoryDef]:
    """Definitions from parsed YAML/JSON: ``{"categories": [...]}`` or a bare list."""
    if isinstance(data, Mapping):
        data = data.get("categories")
    if not isinstance(data, list):
        raise DefinitionError("category definitions must be a list under 'categories'")
    return [category_from_mapping(item) for item in data]


def load_definitions(text: str) -> list[CategoryDef]:
    """Definitions from YAML (or JSON, which is YAML) text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefinitionError(f"category definitions are not valid YAML: {exc}") from exc
    return parse_definitions(data)


def load_default_definitions() -> list[CategoryDef]:
    """The shipped default categories with their seed examples and hints."""
    source = resources.files("classifier") / "data" / DEFAULT_DEFINITIONS_FILE
    return load_definitions(source.read_text(encoding="utf-8"))


def dump_definitions(defs: Sequence[CategoryDef]) -> str:
    """JSON text of ``defs`` (for the admin API and for artifacts)."""
    return json.dumps({"categories": [d.to_dict() for d in defs]}, indent=2, ensure_ascii=False)
