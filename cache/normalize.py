"""Text normalisation and the exact-tier key."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from cache.types import CacheScope

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Unicode NFKC and collapsed whitespace.

    Case is kept on purpose: in code and identifiers it changes the meaning.
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def exact_key(scope: CacheScope, text: str) -> str:
    """Hash of the normalised text inside its scope (hex sha256, 64 chars)."""
    h = hashlib.sha256()
    for part in (scope.tenant, scope.model_alias, scope.fingerprint, normalise_text(text)):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()
