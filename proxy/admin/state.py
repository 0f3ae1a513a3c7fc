"""What the admin API changed, applied to the running services and kept in step
across replicas.

Policies, keys and router settings are state: a change on any replica rewrites
its row, and every replica reloads that kind when the change feed (the audit
table) shows a new row of it. Category changes are operations on the classifier
(add examples, add a category ...): they are replayed in feed order, all at
once with one refit, at start-up and when other replicas make them. Cache
flushes and tenant deletions are replayed when other replicas make them (never at
start-up: their rows are gone by then), for what this replica still had on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

from cache import CacheUnavailable, CategoryPolicy, PolicyError, PolicySet
from classifier import CategoryDef, Classifier, ClassifierError
from proxy.admin.store import AdminStore, AuditEntry, KeyRecord, PolicyOverride, RevokedKey
from proxy.errors import Unavailable
from proxy.services import Services
from router import RouterConfig, RouterError

log = logging.getLogger("cachegate.admin")

POLL_INTERVAL_S = 0.25
ROUTER_SETTING = "router"
REPLAYED = frozenset({"add_examples", "remove_examples", "create", "delete"})


def policy_dict(policy: CategoryPolicy) -> dict[str, Any]:
    return {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)}


def build_policy(base: CategoryPolicy, overrides: dict[str, Any]) -> CategoryPolicy:
    """``base`` with ``overrides`` applied; raises PolicyError naming a bad field."""
    fields = {**policy_dict(base), **overrides}
    if isinstance(fields.get("sampling_params"), list):
        fields["sampling_params"] = tuple(fields["sampling_params"])
    return CategoryPolicy(**fields)


class AdminState:
    """Held on ``Services.admin``; :meth:`start` loads what the store holds."""

    def __init__(self, services: Services, store: AdminStore, *, poll_interval_s: float) -> None:
        self.s = services
        self.store = store
        self.poll_interval_s = poll_interval_s
        self.configured_policies: PolicySet = services.policies
        self.configured_router: RouterConfig = services.router_config
        self.overrides: dict[str, PolicyOverride] = {}
        self.router_setting: dict[str, Any] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.revoked_configured: list[RevokedKey] = []
        self.lock = asyncio.Lock()  # one change (or one feed batch) at a time
        self.last_seq = 0
        self.own: set[int] = set()  # feed ids this replica wrote (already applied)
        self.store_ok = True
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.lock:
            self.last_seq = await self.store.max_seq()  # read first: later changes are polled
            await self.reload({"policy", "key", "router"})
            ops = await self.store.category_ops()
            await self.replay_categories([o for o in ops if o.id <= self.last_seq])
        self._task = asyncio.create_task(self._poll(), name="cachegate-admin-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.close()

    # -- applying state -----------------------------------------------------------------
    async def reload(self, kinds: set[str]) -> None:
        if "policy" in kinds:
            self.overrides = await self.store.policies()
            self.s.policies = self.merged_policies()
        if "key" in kinds:
            records = await self.store.keys()
            for k in records:
                if k.revoked_at is None:
                    self.s.auth.add_key(k.digest, k.tenant, k.id)
                else:
                    self.s.auth.revoke_key(k.digest)
            self.keys = {k.id: k for k in records}
            # Configuration-file keys revoked here stay refused though the file names them.
            self.revoked_configured = await self.store.revoked_configured()
            for r in self.revoked_configured:
                self.s.auth.revoke_key(r.digest)
        if "router" in kinds:
            self.router_setting = await self.store.setting(ROUTER_SETTING) or {}
            try:
                self.apply_router(self.router_config(self.router_setting))
            except RouterError as exc:
                # Only when the configuration changed under a stored setting.
                log.error("admin router setting no longer valid, using configured: %s", exc)
                self.apply_router(self.configured_router)

    def configured_policy(self, category: str) -> CategoryPolicy:
        return self.configured_policies.for_category(category)

    def merged_policies(self) -> PolicySet:
        merged = dict(self.configured_policies.policies)
        for name, o in self.overrides.items():
            try:
                merged[name] = build_policy(self.configured_policy(name), o.fields)
            except (PolicyError, TypeError) as exc:
                # Only when the configuration changed under a stored override.
                log.error("admin policy for %r no longer valid, using configured: %s", name, exc)
        return PolicySet(policies=merged, default=self.configured_policies.default)

    def router_config(self, setting: dict[str, Any]) -> RouterConfig:
        """Raises RouterError naming a bad value."""
        base = self.configured_router
        return dataclasses.replace(
            base,
            threshold=setting.get("threshold", base.threshold),
            category_overrides=setting.get("category_overrides", base.category_overrides),
        )

    def apply_router(self, config: RouterConfig) -> None:
        self.s.router_config = config
        if self.s.router is not None:
            self.s.router = self.s.router.with_config(config)

    async def replay_categories(self, ops: Sequence[AuditEntry]) -> None:
        """Folds category operations into the definitions and refits once."""
        clf = self.s.classifier
        ops = [o for o in ops if o.action in REPLAYED and isinstance(o.new, dict)]
        if clf is None or not ops:
            return
        defs = clf.categories
        for op in ops:
            try:
                defs = fold(defs, op.action, op.target, op.new)
            except ClassifierError as exc:
                log.warning(
                    "skipping category change %d (%s %s): %s", op.id, op.action, op.target, exc
                )
        embed = self.s.embedder.embedder.embed_batch
        try:
            self.s.classifier = await asyncio.to_thread(
                Classifier.train,
                defs,
                embed,
                min_confidence=clf.min_confidence,
                fallback=clf.fallback,
            )
        except ClassifierError as exc:
            log.error("category changes could not be applied; classifier unchanged: %s", exc)

    async def replay_flushes(self, ops: Sequence[AuditEntry]) -> None:
        """Another replica's cache flush or tenant deletion, applied here too: the rows
        are gone already, but this replica may hold the flushed tenant's answers in its
        write-behind queue or have requests in flight for it; run here, the flush covers
        those as it does on the replica that answered it. What was stored since the
        other replica's flush (a poll interval at most) matching it is deleted too."""
        cache = self.s.cache
        if cache is None:
            return
        for op in ops:
            scope = flush_scope(op)
            if scope is None:
                continue
            category, tenant = scope
            try:
                count = await cache.flush_entries(category=category, tenant=tenant)
            except CacheUnavailable as exc:
                log.warning("could not apply flush %d here (%s): %s", op.id, op.target, exc)
                continue
            log.info("applied flush %d (%s) here: %d more entries", op.id, op.target, count)

    async def replay_tenant_deletions(self, ops: Sequence[AuditEntry]) -> None:
        """Another replica's tenant deletion, for this replica's request log: rows it
        wrote since (a poll interval at most) are deleted, and rows of the tenant's
        requests still in flight here are not written when they finish."""
        log_ = self.s.request_log
        if log_ is None:
            return
        for op in ops:
            if op.kind != "tenant" or op.action != "delete":
                continue
            try:
                count = await log_.delete_tenant(op.target)
            except Unavailable as exc:
                log_.forget(op.target)  # the rows in flight at least
                log.warning("could not delete tenant %s's log rows here: %s", op.target, exc)
                continue
            log.info("applied tenant deletion %d here: %d more log rows", op.id, count)

    # -- the change feed ----------------------------------------------------------------
    async def sync(self) -> int:
        """Applies other replicas' changes since the last call; returns how many."""
        changes = await self.store.changes_since(self.last_seq)
        if not changes:
            return 0
        theirs = [c for c in changes if c.id not in self.own]
        await self.reload({c.kind for c in theirs})
        await self.replay_categories([c for c in theirs if c.kind == "category"])
        await self.replay_flushes(theirs)
        await self.replay_tenant_deletions(theirs)
        self.last_seq = changes[-1].id
        self.own = {i for i in self.own if i > self.last_seq}
        return len(theirs)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                async with self.lock:
                    await self.sync()
                if not self.store_ok:
                    log.warning("admin store reachable again")
                self.store_ok = True
            except Unavailable as exc:
                if self.store_ok:
                    log.warning("admin change feed unavailable: %s", exc)
                self.store_ok = False


def flush_scope(op: AuditEntry) -> tuple[str | None, str | None] | None:
    """(category, tenant) that ``op`` flushed from the cache (``None``: any), or
    ``None`` when it is not a flush. Written by the flush and tenant-deletion routes."""
    if op.kind == "tenant" and op.action == "delete":
        return None, op.target
    if op.kind == "cache" and op.action == "flush" and isinstance(op.new, dict):
        # Rows written before the scope was recorded are not replayed.
        category, tenant = op.new.get("category"), op.new.get("tenant")
        recorded = "category" in op.new and "tenant" in op.new
        if recorded and all(v is None or isinstance(v, str) for v in (category, tenant)):
            return category, tenant
    return None


def fold(defs: list[CategoryDef], action: str, name: str, op: dict[str, Any]) -> list[CategoryDef]:
    """``defs`` after one admin operation (the same rules as the classifier's own methods)."""
    by_name = {d.name: d for d in defs}
    if action == "create":
        if name in by_name:
            raise ClassifierError(f"category {name!r} already exists")
        new = CategoryDef(
            name, op.get("description", ""), tuple(op.get("examples", ())),
            tuple(op.get("keywords", ())), tuple(op.get("patterns", ())),
        )  # fmt: skip
        return [*defs, new]
    if name not in by_name:
        raise ClassifierError(f"no category named {name!r}")
    if action == "delete":
        return [d for d in defs if d.name != name]
    d = by_name[name]
    texts = tuple(op.get("examples", ()))
    if action == "add_examples":
        examples = d.examples + texts
    else:
        drop = {t.strip() for t in texts}
        examples = tuple(e for e in d.examples if e not in drop)
    new = CategoryDef(d.name, d.description, examples, d.keywords, d.patterns)
    return [new if x.name == name else x for x in defs]


async def start_admin(services: Services, *, poll_interval_s: float = POLL_INTERVAL_S) -> None:
    """Opens the admin store on the storage URL and starts following it; when the store
    is down the admin API answers 503 (the request path is unaffected)."""
    try:
        store = await AdminStore.open(services.settings.storage.url)
    except Unavailable as exc:
        log.error("admin store unreachable at start-up; admin API disabled: %s", exc)
        return
    state = AdminState(services, store, poll_interval_s=poll_interval_s)
    try:
        await state.start()
    except Unavailable as exc:
        log.error("admin state could not be loaded; admin API disabled: %s", exc)
        await store.close()
        return
    services.admin = state


def now() -> float:
    return time.time()
