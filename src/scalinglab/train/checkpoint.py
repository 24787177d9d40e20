"""Atomic, checksummed checkpoints that load without executing code.

Each checkpoint is ``step_XXXXXXXX.pt`` (written to a temp file, fsynced, renamed) plus a
``.sha256`` sidecar. Loading verifies the checksum and uses ``torch.load(weights_only=True)``, so a
crafted pickle cannot run code; a corrupt or truncated newest checkpoint falls back to the previous one.

The folder may be a local (or shared) path or an fsspec URL (``s3://bucket/ckpt``, ``gs://...``,
``memory://...``) that every worker of a cluster can reach; URLs go through ``fsspec`` (write to a
temporary name, then move; the checksum is written last, so a checkpoint without one is never used).
"""
from __future__ import annotations

import hashlib
import io
import os
import socket
from pathlib import Path

import torch

from .data import _tmp_suffix

KEEP = 2


def is_url(folder) -> bool:
    return "://" in str(folder)


def join(base, *parts: str) -> str:
    """``base/parts`` for a local path or an fsspec URL."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return str(Path(base, *parts))


def _remote(folder):
    import fsspec
    return fsspec.core.url_to_fs(str(folder))


def remove_stale_temps(folder: str | Path) -> list[str]:
    """Delete temporary files left by a writer on this host that no longer runs (a killed save); those of
    live processes and of other hosts are kept. Returns the names removed."""
    if is_url(folder) or not Path(folder).is_dir():
        return []
    removed = []
    host = socket.gethostname()
    for path in Path(folder).glob("*.tmp*"):
        tail = path.name.rsplit(".tmp", 1)[1]
        if tail == "":          # the fixed name of older versions: no writer can be identified, so it is stale
            dead = True
        else:
            parts = tail.lstrip("-").rsplit("-", 2)
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            dead = not process_alive(int(parts[1]))
        if dead:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def step_of(name: str) -> int:
    """The step of a checkpoint file name or path (``.../step_00000116.pt`` -> 116)."""
    return int(name.rsplit("/", 1)[-1].split("_", 1)[1].split(".", 1)[0])


def _save_remote(folder, step: int, state: dict, keep: int = KEEP) -> str:
    fs, root = _remote(folder)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    fs.makedirs(root, exist_ok=True)
    final = f"{root}/step_{step:08d}.pt"
    tmp = final + _tmp_suffix()
    fs.pipe(tmp, data)
    fs.mv(tmp, final)
    fs.pipe(final + ".sha256", hashlib.sha256(data).hexdigest().encode())
    for old in sorted(fs.glob(f"{root}/step_*.pt"))[:-keep]:
        fs.rm(old)
        if fs.exists(old + ".sha256"):
            fs.rm(old + ".sha256")
    return final


def _load_remote(folder, max_step: int | None = None) -> tuple[dict | None, list[str]]:
    fs, root = _remote(folder)
    problems: list[str] = []
    if not fs.exists(root):
        return None, problems
    for path in sorted(fs.glob(f"{root}/step_*.pt"), reverse=True):
        name = path.rsplit("/", 1)[-1]
        if max_step is not None and step_of(name) > max_step:
            continue
        if not fs.exists(path + ".sha256"):
            problems.append(f"{name}: no checksum file")
            continue
        data = fs.cat(path)
        if hashlib.sha256(data).hexdigest() != fs.cat(path + ".sha256").decode().strip():
            problems.append(f"{name}: checksum mismatch (corrupt or truncated)")
            continue
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), problems
        except Exception as e:  # noqa: BLE001 - any unpickling failure means: do not trust this file
            problems.append(f"{name}: refused to load ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    return None, problems


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + _tmp_suffix())
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(folder: str | Path, step: int, state: dict, keep: int = KEEP) -> Path | str:
    """Write ``state`` (tensors and plain Python values only) atomically; keep the newest ``keep``."""
    if is_url(folder):
        return _save_remote(folder, step, state, keep)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    tmp = path.with_name(path.name + _tmp_suffix())
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
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".pt.sha256").unlink(missing_ok=True)
    return path


def load_latest(folder: str | Path, max_step: int | None = None) -> tuple[dict | None, list[str]]:
    """The newest checkpoint (at most ``max_step`` when given) whose checksum verifies and which loads
    as weights only.

    Returns:
        (state or None, list of problems found with newer checkpoints that were skipped).
    """
    if is_url(folder):
        return _load_remote(folder, max_step)
    folder = Path(folder)
    problems: list[str] = []
    if not folder.exists():
        return None, problems
    remove_stale_temps(folder)
    for path in sorted(folder.glob("step_*.pt"), reverse=True):
        if max_step is not None and step_of(path.name) > max_step:
            continue
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
