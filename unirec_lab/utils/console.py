"""What a job prints around its own lines: Lightning's progress bar only when attached to a terminal, and no
third-party noise (tips, known deprecation warnings). The per-epoch line is :class:`unirec_lab.engine.callbacks.EpochLine`.
"""

from __future__ import annotations

import logging
import sys
import warnings

# Warnings Lightning and torch emit on every job that say nothing about the user's run.
_KNOWN_NOISE = (
    r".*isinstance\(treespec, LeafSpec\).*",             # Lightning's pytree shim on torch >= 2.6
    r".*smaller than the logging interval.*",            # we log per epoch, not every n steps
    r".*does not have many workers.*",                   # batches are tensor slices: no loader workers by design
    r".*The number of training batches.*",
    r".*Checkpoint directory .* exists and is not empty.*",  # resume writes into its own checkpoint dir
)
# Lightning's info channel: the litlogger tip, "GPU available", "Restoring states from ..." on every job.
_CHATTY_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                   "lightning_fabric.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                   "pytorch_lightning.accelerators.cuda", "lightning.pytorch.accelerators.cuda")


def quiet_third_party() -> None:
    """Filter the known warnings and mute Lightning's info chatter (warnings from it still show)."""
    for pattern in _KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def interactive() -> bool:
    """True when a person is watching (stderr is a terminal): then the progress bar is worth its redraws."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False
