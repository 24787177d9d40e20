"""Atomic, checksummed checkpoints that load without executing code.

Each checkpoint is ``step_XXXXXXXX.pt`` (written to a temp file, fsynced, renamed) plus a
``.sha256`` sidecar. Loading verifies the checksum and uses ``torch.load(weights_only=True)``, so a
crafted pickle cannot run code; a corrupt or truncated newest checkpoint falls back to the previous one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

KEEP = 2


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(folder: str | Path, step: int, state: dict) -> Path:
    """Write ``state`` (tensors and plain Python values only) atomically; keep the newest two."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    tmp = path.with_suffix(".pt.tmp")
    try:
        with tmp.open("wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        digest = _sha256(tmp)
        os.replace(tmp, path)
        _atomic_write_bytes(path.with_suffix(".pt.sha256"), digest.encode())
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in sorted(folder.glob("step_*.pt"))[:-KEEP]:
        old.unlink(missing_ok=True)
        old.with_suffix(".pt.sha256").unlink(missing_ok=True)
    return path


def load_latest(folder: str | Path) -> tuple[dict | None, list[str]]:
    """The newest checkpoint whose checksum verifies and which loads as weights only.

    Returns:
        (state or None, list of problems found with newer checkpoints that were skipped).
    """
    folder = Path(folder)
    problems: list[str] = []
    if not folder.exists():
        return None, problems
    for path in sorted(folder.glob("step_*.pt"), reverse=True):
        sidecar = path.with_suffix(".pt.sha256")
        if not sidecar.exists():
            problems.append(f"{path.name}: no checksum file")
            continue
        if _sha256(path) != sidecar.read_text().strip():
            problems.append(f"{path.name}: checksum mismatch (corrupt or truncated)")
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=True), problems
        except Exception as e:  # noqa: BLE001 - any unpickling failure means: do not trust this file
            problems.append(f"{path.name}: refused to load ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    return None, problems
