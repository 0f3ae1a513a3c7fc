"""The classifier's exceptions.

::

    ClassifierError                 anything the classifier refuses
    ├── DefinitionError             a bad category definition (name, regex, duplicate, fallback)
    ├── UnknownCategoryError        a category name that is not defined
    ├── ArtifactError               a head artifact that is missing, corrupt or mismatched
    └── InputError                  a vector of the wrong shape, or embed() returning one
"""

from __future__ import annotations


class ClassifierError(Exception):
    """Base of every error raised by :mod:`classifier`."""


class DefinitionError(ClassifierError):
    """A category definition is invalid; the message names the field."""


class UnknownCategoryError(ClassifierError):
    """A category name that the classifier does not define."""


class ArtifactError(ClassifierError):
    """The committed head artifact cannot be used."""


class InputError(ClassifierError):
    """A vector or embedding matrix has the wrong shape or type."""
