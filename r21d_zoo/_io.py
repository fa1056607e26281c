"""Atomic file writes shared by every writer in the package (features, checkpoints, exports, metrics), the checks that
an output folder or file is writable before any work, and the lock that keeps a second live run out of a folder."""

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Optional, Union

from ._errors import InputError

_logger = logging.getLogger(__name__)


def partial_path(path: Union[str, os.PathLike]) -> Path:
    """The temp file :func:`atomic_write` uses for ``path``; a killed run may leave it behind, and the next write of
    ``path`` (or a caller that owns ``path``) replaces or removes it."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def content_identity(path: Union[str, os.PathLike]) -> Optional[list]:
    """What tells a file's content apart without reading it: [size, mtime in ns] (for a frame folder: its file count,
    total size and latest mtime); None when it cannot be read. A rerun trusts earlier work on a path only while this
    is unchanged (a file truncated, replaced or repaired since is checked again)."""
    try:
        p = Path(path)
        if p.is_dir():
            stats = [f.stat() for f in p.iterdir() if f.is_file()]
            return [len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return None


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block ends, then raise it: a save it interrupts
    finishes first (torch.save cut short fails with an unrelated error). Only the main thread can hold signals."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # another thread, or a handler installed outside Python: nothing to hold it with
        return
    caught: List[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], object], shared: bool = False) -> None:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync, then rename: readers see the old file
    or the complete new one, never a partial one; a Ctrl-C during it is raised once the write is done. ``shared``:
    several processes may write ``path`` at once (a setting every rank records), so each writes its own temp file
    (``.<name>.<pid>.partial``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial") if shared else partial_path(path)
    with interrupt_after():
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def append_text(path: Union[str, os.PathLike], text: str) -> None:
    """Append ``text`` with one ``write`` on an ``O_APPEND`` descriptor: writers sharing a file (ranks, a manifest)
    do not interleave, and a reader sees whole entries (a line, a subtitle cue) after each call."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def writable_dir(path: Union[str, os.PathLike], option: str = "-o", what: Optional[str] = None) -> Path:
    """Create ``path`` if needed and prove it writable, before any work is done. ``what`` names the folder in
    errors (default: ``option`` and the path), whose fix is always another ``option``."""
    out = Path(path)
    what = what or f"{option} {path}"
    if out.exists() and not out.is_dir():
        raise InputError(f"{what} is an existing file, not a folder; choose another {option}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise InputError(
            f"cannot write to {what} ({e.strerror or e}); choose another {option}, in a folder you can write to"
        ) from e
    return out


def writable_file(path: Union[str, os.PathLike], option: str) -> Path:
    """The parent folder of an output file must be writable and the file must not be a folder."""
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name")
    writable_dir(str(out.parent), option, f"the folder {out.parent} of {option} {path}")
    return out


class FolderLockedError(InputError):
    """Another live process holds the folder a run writes to."""


class FolderLock:
    """An exclusive lock on an output folder, held by one live process: ``flock`` on ``folder/<name>``, which the
    kernel releases when the process ends, ``kill -9`` included, so the file a killed run leaves is simply taken
    over. The file names its holder (pid, host, command, start time) for the refusal message; a run that ends
    removes it."""

    def __init__(self, folder: Union[str, os.PathLike], name: str = ".r21d-zoo.lock"):
        self.path = Path(folder) / name
        self._fd: Optional[int] = None

    def acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._lock_file()
        previous = self._holder(fd)
        if previous != "unknown process":
            _logger.info("taking over %s from a process that has ended (%s)", self.path, previous)
        record = dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=" ".join([_program()] + sys.argv[1:]),
            started=time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def _lock_file(self) -> int:
        """An open, locked descriptor of the lock file that is at ``self.path`` (a file another process released and
        removed between our open and our lock is not it: open again)."""
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._holder(fd)
                os.close(fd)
                raise FolderLockedError(
                    f"{self.path.parent} is in use by another run that is still going ({holder}); wait for it to "
                    "end, or write into another folder (-o)"
                ) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file, then unlock (a run that ends leaves nothing behind; a killed one leaves the file)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def _holder(fd: int) -> str:  # the record of the process that holds, or held, the lock
        try:
            record = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            record = None
        if not isinstance(record, dict):
            return "unknown process"
        return f"pid {record.get('pid')} on {record.get('host')} since {record.get('started')}: {record.get('command')}"


def _program() -> str:
    return "r21d-zoo" if sys.argv[0].endswith("__main__.py") else Path(sys.argv[0]).name
