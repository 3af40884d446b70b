"""Modules imported on first use: pandas and pyarrow cost a job ~0.4-1 s of start-up, yet a job whose bundles
are cached reads only memory-mapped arrays (``data/derived.py``) and never touches them.

``pd = lazy_import("pandas")`` at module level binds a stand-in that imports the real module the first time an
attribute is read (``pd.read_parquet``) and then behaves as it. Annotations (``from __future__ import
annotations``) never read it.
"""

from __future__ import annotations

import importlib
import sys
import types


class LazyModule(types.ModuleType):
    """A module object whose import waits until an attribute is first read."""

    def __getattr__(self, attr: str) -> object:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def lazy_import(name: str) -> types.ModuleType:
    """The module if already imported, else a :class:`LazyModule` that imports it on first use."""
    return sys.modules.get(name) or LazyModule(name)
