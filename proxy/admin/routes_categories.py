"""/admin/categories: the classifier's categories, their examples, retraining.

Every change refits the classifier head (about a second of CPU), so it runs in
a worker thread, one change at a time; the request path keeps classifying with
the previous model until the new one is swapped in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from classifier import CategoryDef, Classifier, Evaluation
from proxy.admin.deps import AdminDep
from proxy.admin.models import (
    CategoryChange,
    CategoryCreate,
    CategoryDetail,
    CategoryList,
    CategorySummary,
    EvaluationView,
    ExamplesBody,
    RetrainBody,
)
from proxy.errors import NotFound, Unavailable

router = APIRouter(tags=["admin: categories"])


def _classifier(a: AdminDep) -> Classifier:
    if a.services.classifier is None:
        raise Unavailable("the classifier is disabled (classifier.enabled: false)")
    return a.services.classifier


def _summary(d: CategoryDef) -> CategorySummary:
    return CategorySummary(
        name=d.name,
        description=d.description,
        example_count=len(d.examples),
        keywords=list(d.keywords),
        patterns=list(d.patterns),
    )


def _detail(clf: Classifier, name: str) -> CategoryDetail | None:
    for d in clf.categories:
        if d.name == name:
            return CategoryDetail(**_summary(d).model_dump(), examples=list(d.examples))
    return None


def _evaluation(e: Evaluation) -> EvaluationView:
    return EvaluationView.model_validate(e.to_dict())


async def _change(
    a: AdminDep,
    action: str,
    name: str,
    payload: dict[str, Any],
    apply: Callable[[Classifier], Evaluation],
) -> CategoryChange:
    """Applies one change to this replica's classifier (in a worker thread: it refits),
    then records it; other replicas replay ``payload`` (see ``state.fold``)."""
    clf = _classifier(a)
    state = a.state
    async with state.lock:
        before = _detail(clf, name)
        evaluation = await asyncio.to_thread(apply, clf)
        old = None if before is None else {"example_count": before.example_count}
        audit = a.audit("category", action, name, old, payload)
        state.own.add(await state.store.write(audit, now=a.now()))
    return CategoryChange(category=_detail(clf, name), evaluation=_evaluation(evaluation))


@router.get("/categories", response_model=CategoryList)
async def list_categories(a: AdminDep) -> CategoryList:
    clf = _classifier(a)
    return CategoryList(
        data=[_summary(d) for d in clf.categories],
        fallback=clf.fallback,
        min_confidence=clf.min_confidence,
    )


@router.get("/categories/evaluation", response_model=EvaluationView)
async def last_evaluation(a: AdminDep) -> EvaluationView:
    """How the current head scored when it was last fitted."""
    e = _classifier(a).last_evaluation
    if e is None:
        raise NotFound("the classifier has no evaluation yet; POST /admin/categories/retrain")
    return _evaluation(e)


@router.post("/categories/retrain", response_model=EvaluationView)
async def retrain(a: AdminDep, body: RetrainBody | None = None) -> EvaluationView:
    """Refits the head on the current definitions (``holdout`` scores on unseen examples)."""
    clf = _classifier(a)
    holdout = body.holdout if body is not None else False
    async with a.state.lock:
        e = await asyncio.to_thread(clf.retrain, validate=holdout)
        audit = a.audit("category", "retrain", "*", None, {"holdout": holdout})
        a.state.own.add(await a.state.store.write(audit, now=a.now()))
    return _evaluation(e)


@router.post("/categories", response_model=CategoryChange, status_code=201)
async def create_category(a: AdminDep, body: CategoryCreate) -> CategoryChange:
    d = CategoryDef(
        body.name,
        body.description,
        tuple(body.examples),
        tuple(body.keywords),
        tuple(body.patterns),
    )
    return await _change(
        a, "create", body.name, body.model_dump(exclude={"name"}), lambda c: c.add_category(d)
    )


@router.get("/categories/{name}", response_model=CategoryDetail)
async def read_category(a: AdminDep, name: str) -> CategoryDetail:
    detail = _detail(_classifier(a), name)
    if detail is None:
        raise NotFound(f"no category named {name!r}", param="name")
    return detail


@router.delete("/categories/{name}", response_model=CategoryChange)
async def delete_category(a: AdminDep, name: str) -> CategoryChange:
    return await _change(a, "delete", name, {}, lambda c: c.remove_category(name))


@router.post("/categories/{name}/examples", response_model=CategoryChange)
async def add_examples(a: AdminDep, name: str, body: ExamplesBody) -> CategoryChange:
    texts = body.examples
    return await _change(
        a, "add_examples", name, {"examples": texts}, lambda c: c.add_examples(name, texts)
    )


@router.delete("/categories/{name}/examples", response_model=CategoryChange)
async def remove_examples(a: AdminDep, name: str, body: ExamplesBody) -> CategoryChange:
    texts = body.examples
    return await _change(
        a, "remove_examples", name, {"examples": texts}, lambda c: c.remove_examples(name, texts)
    )
