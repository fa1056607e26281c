"""Atomic file writes shared by every writer in the package (features, checkpoints, exports, metrics)."""

import os
from pathlib import Path
from typing import BinaryIO, Callable, Union


def partial_path(path: Union[str, os.PathLike]) -> Path:
    """The temp file :func:`atomic_write` uses for ``path``; a killed run may leave it behind, and the next write of
    ``path`` (or a caller that owns ``path``) replaces or removes it."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], object], shared: bool = False) -> None:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync, then rename: readers see the old file
    or the complete new one, never a partial one. ``shared``: several processes may write ``path`` at once (a
    setting every rank records), so each writes its own temp file (``.<name>.<pid>.partial``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial") if shared else partial_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
