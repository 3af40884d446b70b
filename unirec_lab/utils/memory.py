"""Refuse sizes that cannot fit in memory before allocating them (one line naming the key), not after swapping."""

from __future__ import annotations

import os
from pathlib import Path

GIB = 1024 ** 3


class MemoryBudgetError(ValueError):
    """A config value would allocate more memory than the machine has available."""


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, else physical memory from sysconf; None when neither is known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def ensure_fits(need: int, key: str, value: object, what: str, available: int | None = None) -> None:
    """Raise :class:`MemoryBudgetError` naming ``key=value`` when ``need`` bytes exceed the available memory."""
    avail = available_bytes() if available is None else available
    if avail is not None and need > avail:
        raise MemoryBudgetError(f"{key}={value}: {what} would take ~{need / GIB:.1f} GiB, more than the "
                                f"{avail / GIB:.1f} GiB of memory available; lower {key}")


def embedding_bytes(num_rows: int, dim: int, copies: int = 4) -> int:
    """float32 embedding tables: weights, gradients and two Adam moments (``copies``)."""
    return int(num_rows) * int(dim) * 4 * copies


def history_bytes(num_rows: int, history_len: int, copies: int = 2) -> int:
    """int64 behaviour histories; ``copies``: the padded array and its shifted copy exist at once while built."""
    return int(num_rows) * int(history_len) * 8 * copies
