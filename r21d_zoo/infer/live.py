"""Labels over time from a live source (``r21d-zoo predict --live SOURCE``): :func:`live_windows` yields each window's
top-k as soon as it is classified, and :class:`LiveOutputs` appends it to JSON lines, SRT and WebVTT files that are
valid after every window.

Windows are the timeline's windows of :func:`r21d_zoo.infer.timeline.predict` on the stream's time: ``stride_sec``
apart from 0 s (default back to back), each the weights' clip (frames, rate, resize, centre crop, mean/std) read from
the source's rolling buffer by the file readers' rule. A window is ready once its last frame has arrived. **It never
falls behind**: after each answer the latest ready window is classified next and the ready ones before it are skipped
(counted), so nothing queues; each window's latency is the time from the arrival of its last frame to its answer.
"""

import collections
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch.nn as nn

from .._io import append_text, atomic_write
from ..models import ClipSpec
from ..video.live import FrameBuffer, LiveSource
from ..video.reader import Clip
from .config import ExtractConfig, InferenceOptions, PredictConfig
from .features import FeatureRunner
from .scores import clip_probs, model_classes
from .timeline import caption, srt_cue, vtt_cue

_logger = logging.getLogger(__name__)


@dataclass
class LiveWindow:
    """One classified window: its place in the stream (seconds from the first frame), its top-k, the windows skipped
    just before it, and how long its answer took from its last frame's arrival (``latency``) and in the model."""

    index: int
    start: float
    end: float
    predictions: List[Dict[str, Any]]
    skipped: int
    latency: float
    model_seconds: float

    def to_json(self) -> Dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class LiveSummary:
    windows: int = 0
    skipped: int = 0
    reconnects: int = 0
    ended: str = ""
    lost: bool = False  # a network source that dropped and did not come back within its reconnect attempts
    latencies: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=10000))  # the last windows'

    def add(self, w: LiveWindow) -> None:
        self.windows += 1
        self.skipped += w.skipped
        self.latencies.append(w.latency)

    def line(self) -> str:
        lat = np.array(self.latencies) if self.latencies else np.zeros(1)
        return (
            f"{self.windows} windows, {self.skipped} skipped (inference slower than the stream), latency median "
            f"{np.median(lat):.3f} s, p95 {np.percentile(lat, 95):.3f} s, max {lat.max():.3f} s; "
            f"{self.reconnects} reconnect attempt(s); ended: {self.ended}"
        )


def live_windows(
    model: nn.Module,
    source: str,
    cfg: Optional[PredictConfig] = None,
    *,
    inference: Optional[InferenceOptions] = None,
    reconnect: int = 3,
    timeout: float = 10.0,
    summary: Optional[LiveSummary] = None,
    **overrides: Any,
) -> Iterator[LiveWindow]:
    """Classify the windows of the live ``source`` (see :mod:`r21d_zoo.video.live`) as they arrive, until it ends or
    the caller stops iterating. Keyword overrides replace fields of ``cfg`` (``stride_sec=0.5``, ``top_k=3``);
    ``summary`` is filled in as it goes (counts, latencies, why the source ended)."""
    cfg = replace(cfg or PredictConfig(), **overrides)
    summary = summary if summary is not None else LiveSummary()
    classifier = LiveClassifier(model, cfg, inference)
    with LiveSource(source, classifier.spec, (cfg.stride_sec or 0) + 1.0, reconnect, timeout) as live:
        index = 0
        try:
            while True:
                latest = live.wait_past(classifier.ready_at(index, live))
                if latest is None:
                    break
                window = classifier.classify(live, index)
                summary.add(window)
                summary.reconnects = live.reconnects
                yield window
                index = window.index + 1
        finally:
            summary.reconnects, summary.lost = live.reconnects, live.lost
            summary.ended = live.ended or "stopped"


class LiveClassifier:
    """The model's windows over a :class:`~r21d_zoo.video.live.FrameBuffer`: when a window is ready, and the answer
    for the latest ready one. One per model; each stream keeps its own next index."""

    def __init__(self, model: nn.Module, cfg: PredictConfig, inference: Optional[InferenceOptions] = None) -> None:
        self.cfg, self.labels = cfg, model_classes(model)
        self.spec = ClipSpec.from_model(model, **dict(cfg.clip, crop_mode="center"))
        self.runner = FeatureRunner(model, self.spec, ExtractConfig(batch_size=1), inference or InferenceOptions())
        self.runner.warm_up()  # before the stream: its first window is answered on time

    def _timing(self, buffer: FrameBuffer) -> Tuple[float, float, float]:
        """A window's length, the stride, and its last frame's offset from its start (less half a frame: frame
        times are within half a frame of the rate's)."""
        fps = buffer.info.fps
        length = self.spec.clip_seconds(fps)
        num_frames, step = self.spec.frames_to_read()
        last = (num_frames - 1) * step / (self.spec.frame_rate or fps) - 0.5 / fps
        return length, self.cfg.stride_sec or length, last

    def ready_at(self, index: int, buffer: FrameBuffer) -> float:
        """The stream time a frame must reach for window ``index`` to be ready."""
        _, stride, last = self._timing(buffer)
        return index * stride + last

    def classify(self, buffer: FrameBuffer, index: int) -> Optional[LiveWindow]:
        """The answer for the latest ready window from ``index`` on (the ones before it counted as skipped), or None
        while window ``index`` is not ready."""
        length, stride, last = self._timing(buffer)
        latest = buffer.latest
        if latest < index * stride + last:
            return None
        ready = max(index, math.floor((latest - last) / stride + 1e-9))
        start = ready * stride
        arrived = buffer.arrival(start + last)
        t0 = time.monotonic()
        probs = clip_probs(buffer, [Clip(start, start + length, ready)], [(self.runner, self.spec, 1.0)], 1)[0]
        now = time.monotonic()
        order = np.argsort(-probs, kind="stable")[: self.cfg.top_k]
        top = [dict(label=self.labels[j], score=round(float(probs[j]), 6)) for j in order
               if probs[j] >= self.cfg.threshold]  # fmt: skip
        return LiveWindow(ready, start, start + length, top, ready - index, now - arrived, now - t0)


class LiveOutputs:
    """``OUT/NAME.jsonl``, ``.srt`` and ``.vtt`` (those in ``outputs``), a window appended to each as it comes with one
    ``write`` per file, so each is valid after every window (SRT and WebVTT cues: the stride around each window's
    centre, as the file timeline's cues for even windows)."""

    KINDS = ("jsonl", "srt", "vtt")

    def __init__(self, out: Path, name: str, outputs: List[str], stride: Optional[float] = None) -> None:
        self.paths = {k: Path(out) / f"{name}.{k}" for k in self.KINDS if k in outputs}
        self.stride, self.cues = stride, 0
        for kind, path in self.paths.items():
            path.write_text("WEBVTT\n\n" if kind == "vtt" else "")

    def add(self, w: LiveWindow) -> None:
        half = (self.stride or (w.end - w.start)) / 2
        centre = (w.start + w.end) / 2
        span = (max(0.0, centre - half), centre + half)
        text = caption(w.predictions)
        for kind, path in self.paths.items():
            if kind == "jsonl":
                entry = json.dumps(w.to_json(), sort_keys=True) + "\n"
            elif not text:
                continue
            else:
                entry = srt_cue(self.cues + 1, *span, text) if kind == "srt" else vtt_cue(*span, text)
            append_text(path, entry)
        self.cues += bool(text)


def plot_live(jsonl: Path, path: Path, max_classes: int = 8) -> Path:
    """The scores over time of the classes that lead some window of a live run's JSON lines (at most
    ``max_classes``, by peak score; a class out of a window's top-k counts 0 there)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut short
    centres = np.array([(r["start"] + r["end"]) / 2 for r in rows])
    scores: Dict[str, np.ndarray] = {}
    for i, r in enumerate(rows):
        for p in r["predictions"]:
            scores.setdefault(p["label"], np.zeros(len(rows)))[i] = p["score"]
    leaders = {r["predictions"][0]["label"] for r in rows if r["predictions"]}
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for label in sorted(leaders, key=lambda k: -scores[k].max())[:max_classes]:
        ax.plot(centres, scores[label], marker="o", markersize=3, label=label)
    ax.set(xlabel="stream time (s, window centres)", ylabel="score", ylim=(0, 1), title=f"live: {len(rows)} windows")
    if leaders:
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path
