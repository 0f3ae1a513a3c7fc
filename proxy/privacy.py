"""What cachegate stores for each tenant.

- ``cache`` (on by default): off means the tenant's requests neither read nor
  write the semantic cache; nothing of theirs is kept beyond the request.
- ``request_log`` (off by default): one SQL row per answered request (category,
  tier, router score, token counts, response id, later feedback), kept for
  ``log_retention_s`` and used to retrain the router.
- ``store_prompts`` (off by default): the prompt text in that row; without it
  the row has no text and only helps aggregate statistics.

Secrets are never stored or logged: client and admin keys are held as SHA-256
digests, backend credentials only in the backend transport's headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.settings import PrivacySettings


@dataclass(frozen=True)
class TenantPrivacy:
    cache: bool
    request_log: bool
    store_prompts: bool


class Privacy:
    def __init__(self, settings: PrivacySettings) -> None:
        self.settings = settings
        default = TenantPrivacy(settings.cache, settings.request_log, settings.store_prompts)
        self._default = default
        self._tenants = {
            name: TenantPrivacy(
                cache=default.cache if t.cache is None else t.cache,
                request_log=default.request_log if t.request_log is None else t.request_log,
                store_prompts=default.store_prompts if t.store_prompts is None else t.store_prompts,
            )
            for name, t in settings.tenants.items()
        }

    def for_tenant(self, tenant: str) -> TenantPrivacy:
        return self._tenants.get(tenant, self._default)

    @property
    def any_logging(self) -> bool:
        return self._default.request_log or any(t.request_log for t in self._tenants.values())
