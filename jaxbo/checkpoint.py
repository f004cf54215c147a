"""Checkpoints of a sweep: one file per finished chunk, written atomically, checked on reading.

A directory holds ``manifest.json`` (the fingerprint of the sweep: jaxbo version, grid, config, seeds, key,
engine, histories, optimizer and chunk plan) and ``chunk-GGG-CCCCC.npz`` files (run indices, metrics and a
SHA-256 checksum of them). A sweep rerun with the same arguments loads finished chunks and computes the rest;
a directory made by another sweep is refused; an unreadable or corrupted chunk is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
FORMAT = "jaxbo.checkpoint/1"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _atomic_write(path: str, write) -> None:
    """Write through a temporary file in the same directory, then rename: readers never see half a file."""
    directory = os.path.dirname(path)
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".tmp-", suffix=os.path.basename(path), delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        if os.path.exists(handle.name):
            os.remove(handle.name)
        raise


class CheckpointStore:
    """Chunk files of one sweep in ``directory``; created, or verified against ``fingerprint``."""

    def __init__(self, directory: str | os.PathLike, fingerprint: dict[str, Any]):
        self.directory = os.fspath(directory)
        self.loaded = 0
        os.makedirs(self.directory, exist_ok=True)
        fingerprint = json.loads(json.dumps({"format": FORMAT, **fingerprint}))
        path = os.path.join(self.directory, MANIFEST)
        if os.path.exists(path):
            with open(path) as handle:
                try:
                    existing = json.load(handle)
                except json.JSONDecodeError as error:
                    raise ValueError(f"checkpoint {path} is not valid JSON ({error}); delete the directory") from None
            differing = sorted(k for k in set(existing) | set(fingerprint) if existing.get(k) != fingerprint.get(k))
            if differing:
                details = "; ".join(
                    f"{k}: checkpoint {existing.get(k)!r} vs now {fingerprint.get(k)!r}" for k in differing
                )
                raise ValueError(
                    f"checkpoint directory {self.directory!r} belongs to another sweep ({details}). "
                    "Rerun with the same arguments, or use a new directory."
                )
        else:
            _atomic_write(path, lambda handle: handle.write(json.dumps(fingerprint, indent=2).encode()))

    def _path(self, group: int, chunk: int) -> str:
        return os.path.join(self.directory, f"chunk-{group:03d}-{chunk:05d}.npz")

    def load(self, group: int, chunk: int, rows: np.ndarray) -> dict[str, np.ndarray] | None:
        """Arrays of a finished chunk covering ``rows``, or None if absent, unreadable or corrupted."""
        path = self._path(group, chunk)
        if not os.path.exists(path):
            return None
        try:
            # Our own handle: np.load leaks its file when a truncated archive makes it raise.
            with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            checksum = str(arrays.pop("checksum"))
            if checksum != _checksum(arrays) or not np.array_equal(arrays.pop("rows"), rows):
                raise ValueError("checksum or run indices do not match")
        except Exception as error:  # a truncated zip raises one of several types: all mean "recompute"
            warnings.warn(
                f"checkpoint chunk {path} is unreadable or corrupted ({error}); recomputing it",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        self.loaded += 1
        return arrays

    def save(self, group: int, chunk: int, rows: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        """Write a finished chunk atomically with its run indices and checksum."""
        payload = {**arrays, "rows": np.asarray(rows)}
        payload["checksum"] = np.asarray(_checksum(payload))
        _atomic_write(self._path(group, chunk), lambda handle: np.savez(handle, **payload))
