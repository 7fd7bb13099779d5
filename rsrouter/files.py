"""File helpers: atomic writes, sha256, and tensors saved as safetensors (no pickle).

torch and safetensors are imported by the functions that need them, so that commands which only
read cards and registries start fast.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import IntegrityError, LockedError, ResumeError

if TYPE_CHECKING:
    import torch


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_hashed(path: str | os.PathLike) -> tuple[bytes, str]:
    """The bytes of ``path`` and their sha256, from one read (what is hashed is what is used)."""
    data = Path(path).read_bytes()
    return data, sha256_bytes(data)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_resume(path: str | os.PathLike, expected: dict, found: dict | None,
                 fix: str) -> None:
    """Refuse to continue ``path`` (a results file, a checkpoint, a finished run) unless the
    settings it was made with (``found``; None when missing or unreadable) are ``expected``,
    compared as JSON. Every resumable thing in rsrouter checks its settings here.

    Raises:
        ResumeError: naming every key that differs, with its recorded and its new value, and
            ``fix``.
    """
    expected = json.loads(json.dumps(expected))
    if found == expected:
        return
    if found is None:
        raise ResumeError(f"{path} cannot be continued: the settings it was made with are "
                          f"missing or unreadable; {fix}")
    keys = sorted(set(found) | set(expected), key=str)
    diff = "; ".join(f"{k}: {found.get(k)!r} recorded, {expected.get(k)!r} now" for k in keys
                     if found.get(k) != expected.get(k))
    raise ResumeError(f"{path} was made with other settings ({diff}); {fix}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict | None = None) -> None:
    """Atomically save ``tensors`` as safetensors with a JSON ``metadata`` dict."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(tensors, tmp, metadata={"json": json.dumps(metadata or {})})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors file; returns ``(tensors, metadata)``.

    Raises:
        IntegrityError: the file is truncated or not a safetensors file.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise IntegrityError(f"{path} cannot be read ({e})") from e
    return tensors_from_bytes(data, str(path))


def tensors_from_bytes(data: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Parse safetensors ``data`` (already read and hashed); returns ``(tensors, metadata)``.

    Raises:
        IntegrityError: the bytes are truncated or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise IntegrityError(f"{where} is not a readable safetensors file (truncated or corrupt: "
                             f"{e}); delete it and download or rebuild it") from e
    return tensors, json.loads(meta.get("json", "{}"))


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer's state into tensors plus JSON-able metadata."""
    import torch

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                      meta: dict) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class FileLock:
    """An exclusive OS lock (``flock``) on ``path``, which names the process that holds it.

    The OS releases the lock when the process exits or crashes, so a stale lock file never
    blocks a rerun. Use as a context manager or call :meth:`acquire` / :meth:`release`.

    Raises:
        LockedError: another process holds the lock ("in use by pid N").
    """

    def __init__(self, path: str | os.PathLike, what: str = "") -> None:
        self.path = Path(path)
        self.what = what or str(self.path)
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise LockedError(f"{self.what} is in use by pid {holder} (another rsrouter run "
                                  "writes it); wait for it to finish, or choose another --out") \
                    from None
            try:  # the file we locked may have been removed by a holder that just released it
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
