"""Helpers shared by the bench scripts: medians of repeated timings, process-tree RSS, tables and JSON output."""

import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds (after ``warmup`` calls; CUDA is synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved_medians(fns: Dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1) -> Dict[str, float]:
    """Median times of several functions measured in alternation, so drifting machine load hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            samples[k].append(median_time(fn, repeats=1, warmup=0))
    return {k: statistics.median(v) for k, v in samples.items()}


def _pss_bytes(pid: str) -> int:
    """Proportional set size: resident memory with pages shared between processes (forked workers) split among
    them, so a process tree's values add up to its real footprint (summing RSS counts shared pages repeatedly)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _tree_rss_bytes(root: int) -> int:
    children: Dict[int, List[int]] = {}
    rss: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            rss[int(entry)] = _pss_bytes(entry)
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def malloc_in_use() -> int:
    """Bytes the C allocator has handed out (glibc ``mallinfo2``: arena + mmapped blocks). Unlike RSS it drops when
    tensors are freed, so sampling it gives the peak of CPU tensor memory during a run."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


class PeakSampler:
    """Peak of ``measure()`` (bytes) above its value on entry, sampled every ``interval`` seconds in a thread."""

    def __init__(self, measure: Callable[[], int], interval: float, relative: bool):
        self.measure, self.interval, self.relative, self.peak = measure, interval, relative, 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure() - self.start)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakSampler":
        self.start = self.measure() if self.relative else 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def PeakMalloc(interval: float = 0.002) -> PeakSampler:
    """Peak CPU tensor memory of a run: :func:`malloc_in_use` above its starting value."""
    return PeakSampler(malloc_in_use, interval, relative=True)


def PeakRSS(pid: int = None, interval: float = 0.05) -> PeakSampler:
    """Peak resident memory (PSS) of a process and all its descendants (DataLoader workers)."""
    pid = pid or os.getpid()
    return PeakSampler(lambda: _tree_rss_bytes(pid), interval, relative=False)


def machine() -> Dict[str, object]:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return dict(
        cpu=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        gpu=gpu,
        torch=torch.__version__,
    )


def print_table(rows: Sequence[Dict[str, object]], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    text = "\n".join(lines)
    print(text)
    return text


def write_json(path: str, payload: Dict[str, object]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(dict(payload, machine=machine()), indent=2) + "\n")
    print(f"wrote {path}")
