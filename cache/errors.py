"""Errors raised by ``cache``.

Hierarchy::

    CacheError
    ├── PolicyError        a policy value is out of range (the message names the field)
    ├── CacheUnavailable   the document store cannot be reached; the proxy treats it as a miss
    ├── EntryNotFound      an admin call named an entry that does not exist (or is deleted)
    ├── SpaceMismatch      the store holds vectors of another embedder than the one given
    │   └── SpaceChanged   ... since this cache opened: another replica adopted another embedder
    └── EquivalenceError   bad argument/artifact of the equivalence check (cache.equivalence)

SQLAlchemy and database-driver errors are translated into ``CacheUnavailable`` at the
store's edge with ``raise ... from exc``; nothing outside ``cache`` sees them.
"""

from __future__ import annotations


class CacheError(Exception):
    """Base of every error raised by ``cache``."""


class PolicyError(CacheError, ValueError):
    """A policy field is invalid."""


class CacheUnavailable(CacheError):
    """The document store could not be reached."""


class EntryNotFound(CacheError, KeyError):
    """No live entry has the given id."""


class SpaceMismatch(CacheError):
    """The store's vectors were written by another embedder (another vector space)."""


class SpaceChanged(SpaceMismatch):
    """Since this cache opened, another replica gave the store another embedder's space
    (``cache.on_embedder_change: flush`` or ``reembed``); this replica must not read or
    write it."""
