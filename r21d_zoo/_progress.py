"""Progress for long work: a tqdm bar on a terminal, timestamped log lines with rate and ETA elsewhere (a log file,
SLURM, nohup), so a batch job always shows signs of life. A leaf module: the model zoo's downloads use it too."""

import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

_logger = logging.getLogger("r21d_zoo.progress")


def log_every() -> float:
    """Seconds between progress lines when stderr is not a terminal (``R21D_ZOO_LOG_EVERY``, default 30)."""
    return float(os.environ.get("R21D_ZOO_LOG_EVERY", "30"))


class _LogProgress:
    """tqdm's interface for a job whose stderr is not a terminal (a log file, SLURM, nohup): an INFO line every
    ``every`` seconds with the count, rate and ETA, instead of a bar that nobody sees."""

    def __init__(self, iterable: Optional[Iterable], total: Optional[int], desc: str, unit: str, every: float):
        self.iterable, self.total, self.desc, self.unit, self.every = iterable, total, desc, unit, every
        self.n, self.postfix = 0, ""
        self.start = self.last = time.perf_counter()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.n == self.total:
            self.last = now
            rate = self.n / max(now - self.start, 1e-9)
            left = f", ETA {(self.total - self.n) / rate:.0f} s" if self.total and rate > 0 else ""
            of = f"/{self.total}" if self.total else ""
            units = self.unit + ("es" if self.unit.endswith("ch") else "s")
            postfix = f" ({self.postfix})" if self.postfix else ""
            _logger.info(f"{self.desc}: {self.n}{of} {units}, {rate:.2f} {self.unit}/s{left}{postfix}")

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass


def progress(
    iterable: Optional[Iterable] = None,
    total: Optional[int] = None,
    desc: str = "",
    unit: str = "it",
    show: bool = True,
) -> Any:
    """A progress display: a tqdm bar on a terminal, periodic log lines elsewhere (every ``R21D_ZOO_LOG_EVERY``
    seconds, default 30), nothing when ``show`` is False (e.g. on ranks other than 0)."""
    from tqdm.auto import tqdm

    if show and not sys.stderr.isatty():
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        return _LogProgress(iterable, total, desc, unit, log_every())
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=not show)


@contextmanager
def watch_file(path: Path, desc: str, show: bool = True) -> Iterator[None]:
    """While the body writes ``path`` (a download), log a line when it starts, its size and rate every
    :func:`log_every` seconds, and the total when it ends, when stderr is not a terminal (on a terminal the writer's
    own bar shows)."""
    if not show or sys.stderr.isatty():
        yield
        return
    stop, start = threading.Event(), time.perf_counter()

    def report(final: str = "") -> None:
        size = path.stat().st_size if path.exists() else 0
        seconds = time.perf_counter() - start
        _logger.info(f"{desc}: {size / 2**20:.1f} MB{final}, {size / 2**20 / max(seconds, 1e-9):.2f} MB/s")

    def loop() -> None:
        while not stop.wait(max(log_every(), 0.05)):
            report()

    _logger.info(f"{desc}: started")
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
        report(f" in {time.perf_counter() - start:.1f} s, done")
    finally:
        stop.set()
        thread.join()
