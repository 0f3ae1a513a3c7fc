"""Errors raised by ``router``.

Hierarchy::

    RouterError                  base; every error names the bad value
    ├── RouterConfigError        unknown router name, threshold outside [0, 1], bad config field
    ├── RouterDataError          training/calibration data that cannot be used
    ├── RouterArtifactError      a router artifact that is missing, corrupt or of another shape
    ├── UtilityStoreUnavailable  the SQL store of example utilities could not be reached
    └── JudgeUnavailable         the judge's large-model call (or embedding) failed

All subclass ``ValueError`` so callers validating user input can catch either.
"""

from __future__ import annotations


class RouterError(ValueError):
    """Base of every error raised by ``router``."""


class RouterConfigError(RouterError):
    """A router name, threshold or configuration field was refused."""


class RouterDataError(RouterError):
    """Training or calibration data could not be used."""


class RouterArtifactError(RouterError):
    """A saved router could not be loaded."""


class UtilityStoreUnavailable(RouterError):
    """The shared store of example utilities failed (driver or connection error)."""


class JudgeUnavailable(RouterError):
    """The large model (or the embedder) could not give the judge what it needs.

    Raised by the callables the proxy hands to the judge; it counts a failed
    judgement and moves on.
    """
