from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import router


def test_all_is_complete_and_importable() -> None:
    for name in router.__all__:
        assert hasattr(router, name), name
    assert len(set(router.__all__)) == len(router.__all__)


def test_no_proxy_cache_or_aiohttp_imports() -> None:
    for info in pkgutil.iter_modules(router.__path__):
        module = importlib.import_module(f"router.{info.name}")
        source = Path(module.__file__ or "").read_text()
        for banned in (
            "import aiohttp",
            "from proxy",
            "import proxy",
            "from cache",
            "import cache",
        ):
            assert banned not in source, (info.name, banned)
