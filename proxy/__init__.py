"""The HTTP face of cachegate: OpenAI endpoints, admin, auth, orchestration, settings, CLI."""

from proxy.app import create_app
from proxy.errors import ProxyError, SettingsError
from proxy.settings import Settings, load_settings, settings_from_mapping

__all__ = [
    "ProxyError",
    "Settings",
    "SettingsError",
    "create_app",
    "load_settings",
    "settings_from_mapping",
]
