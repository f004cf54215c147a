"""Checkpoints of a sweep: one file per finished chunk, written atomically, checked on reading.

A directory holds ``manifest.json`` (the fingerprint of the sweep: jaxbo version, grid, config, seeds, key,
engine, histories, optimizer and chunk plan) and ``chunk-GGG-CCCCC.npz`` files (run indices, metrics, the
sweep's fingerprint and a SHA-256 checksum of all of them). A sweep rerun with the same arguments loads
finished chunks and computes the rest. Nothing is trusted on the manifest's word alone:

- a manifest of another sweep refuses the directory, naming the fields that differ;
- a chunk whose own fingerprint is not this sweep's (copied in from another sweep's directory) is never used;
- a missing or unreadable manifest is rebuilt only when every chunk file proves it belongs to this sweep;
  otherwise the refusal lists exactly the files that cannot, so good chunks are not thrown away;
- an unreadable or corrupted chunk is recomputed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
FORMAT = "jaxbo.checkpoint/2"
#: The release whose numbers a chunk holds, as its fingerprint's "jaxbo" entry: the last release that moved any
#: number of a run (docs/changelog.md says which). A release that moves numbers sets it to itself, so its
#: sweeps refuse older chunks; one that does not leaves it, so stores written before it still resume.
NUMBERS_RELEASE = "0.4.0"
#: The array of a chunk file that holds its sweep's fingerprint (canonical JSON), covered by its checksum.
FINGERPRINT = "fingerprint"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _canonical(fingerprint: dict[str, Any]) -> str:
    return json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))


def _differences(stored: dict[str, Any], now: dict[str, Any]) -> str:
    """``field: checkpoint X vs now Y`` for every top-level field that differs."""
    differing = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    return "; ".join(f"{k}: checkpoint {stored.get(k)!r} vs now {now.get(k)!r}" for k in differing)


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


def _read_chunk(path: str) -> dict[str, np.ndarray]:
    """The arrays of a chunk file, checksum verified (the checksum itself removed); raises if unreadable."""
    # Our own handle: np.load leaks its file when a truncated archive makes it raise.
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    if "checksum" not in arrays:
        raise ValueError("it has no checksum")
    if str(arrays.pop("checksum")) != _checksum(arrays):
        raise ValueError("its checksum does not match its contents")
    return arrays


class CheckpointStore:
    """Chunk files of one sweep in ``directory``; created, or verified against ``fingerprint``.

    ``report(text)`` receives the one-line notes of a resume (a corrupted chunk recomputed, a manifest
    rebuilt); without it they are ``RuntimeWarning``s.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        fingerprint: dict[str, Any],
        report: Callable[[str], None] | None = None,
    ):
        self.directory = os.fspath(directory)
        self.loaded = 0
        self.report = report
        os.makedirs(self.directory, exist_ok=True)
        self.fingerprint = json.loads(json.dumps({"format": FORMAT, **fingerprint}))
        self._canonical = _canonical(self.fingerprint)
        path = os.path.join(self.directory, MANIFEST)
        problem = None
        if not os.path.exists(path):
            problem = f"no {MANIFEST}"
        else:
            try:
                with open(path) as handle:
                    existing = json.load(handle)
                if not isinstance(existing, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as error:
                problem = f"an unreadable {MANIFEST} ({error})"
            else:
                differences = _differences(existing, self.fingerprint)
                if differences:
                    raise ValueError(
                        f"checkpoint directory {self.directory!r} belongs to another sweep ({differences}). "
                        "Rerun with the same arguments, or use a new directory."
                    )
        if problem is not None:
            self._rebuild_manifest(path, problem)

    def _note(self, text: str) -> None:
        if self.report is None:
            warnings.warn(text, RuntimeWarning, stacklevel=4)
        else:
            self.report(text)

    def _chunk_files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(glob.escape(self.directory), "chunk-*.npz")))

    def _foreign(self, arrays: dict[str, np.ndarray]) -> str | None:
        """Why a verified chunk does not belong to this sweep, or None when it does."""
        if FINGERPRINT not in arrays:
            return "it carries no sweep fingerprint (written before checkpoint format /2)"
        stored = str(arrays[FINGERPRINT])
        if stored == self._canonical:
            return None
        try:
            return f"it belongs to another sweep ({_differences(json.loads(stored), self.fingerprint)})"
        except ValueError:
            return "its sweep fingerprint is not valid JSON"

    def _rebuild_manifest(self, path: str, problem: str) -> None:
        """Write the manifest anew when every chunk file proves it belongs here; else refuse, naming the files
        that cannot (the ones that can are kept, so deleting exactly those files lets the sweep resume)."""
        proven, unproven = [], []
        for chunk in self._chunk_files():
            try:
                why = self._foreign(_read_chunk(chunk))
            except Exception as error:  # a truncated zip raises one of several types
                why = f"it is unreadable or corrupted ({error})"
            (unproven if why else proven).append((chunk, why))
        if unproven:
            reasons = sorted({why for _, why in unproven})
            names = " ".join(os.path.basename(chunk) for chunk, _ in unproven)
            kept = f"the other {len(proven)}, which belong to this sweep, are kept" if proven else "none belongs to it"
            raise ValueError(
                f"checkpoint directory {self.directory!r} has {problem}, and {len(unproven)} chunk file(s) cannot be "
                f"shown to belong to this sweep: {'; '.join(reasons)}. Delete these files from it and run again "
                f"({kept}): {names}. Or use a new directory."
            )
        _atomic_write(path, lambda handle: handle.write(json.dumps(self.fingerprint, indent=2).encode()))
        if proven:
            self._note(
                f"checkpoint {self.directory}: {problem}; rebuilt it from {len(proven)} chunk file(s) that carry this "
                "sweep's fingerprint"
            )

    def _path(self, group: int, chunk: int) -> str:
        return os.path.join(self.directory, f"chunk-{group:03d}-{chunk:05d}.npz")

    def load(self, group: int, chunk: int, rows: np.ndarray) -> dict[str, np.ndarray] | None:
        """Arrays of a finished chunk covering ``rows``, or None if absent, unreadable, corrupted or another
        sweep's (each said once, then recomputed)."""
        path = self._path(group, chunk)
        if not os.path.exists(path):
            return None
        try:
            arrays = _read_chunk(path)
        except Exception as error:  # a truncated zip raises one of several types: all mean "recompute"
            self._note(f"checkpoint chunk {path} is unreadable or corrupted ({error}); recomputing it")
            return None
        why = self._foreign(arrays) or (None if np.array_equal(arrays["rows"], rows) else "its run indices differ")
        if why:
            self._note(f"checkpoint chunk {path} is not used: {why}; recomputing it")
            return None
        arrays.pop("rows")
        arrays.pop(FINGERPRINT)
        self.loaded += 1
        return arrays

    def save(self, group: int, chunk: int, rows: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        """Write a finished chunk atomically with its run indices, the sweep's fingerprint and a checksum."""
        payload = {**arrays, "rows": np.asarray(rows), FINGERPRINT: np.asarray(self._canonical)}
        payload["checksum"] = np.asarray(_checksum(payload))
        _atomic_write(self._path(group, chunk), lambda handle: np.savez(handle, **payload))
