"""Errors raised by ``router``.

Hierarchy::

    RouterError                  base; every error names the bad value
    ├── RouterConfigError        unknown router name, threshold outside [0, 1], bad config field
    ├── RouterDataError          training/calibration data that cannot be used
    └── RouterArtifactError      a router artifact that is missing, corrupt or of another shape

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
