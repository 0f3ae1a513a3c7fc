from __future__ import annotations

import classifier


def test_all_names_resolve_and_cover_the_proxy_api() -> None:
    for name in classifier.__all__:
        assert hasattr(classifier, name), name
    needed = {"CategoryDef", "Classification", "Classifier", "ClassifierError",
              "load_default_definitions", "Evaluation"}  # fmt: skip
    assert needed <= set(classifier.__all__)
    assert sorted(classifier.__all__) == sorted(set(classifier.__all__))


def test_errors_form_one_tree() -> None:
    for name in ("DefinitionError", "UnknownCategoryError", "ArtifactError", "InputError"):
        assert issubclass(getattr(classifier, name), classifier.ClassifierError)
