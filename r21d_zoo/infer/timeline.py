""":func:`predict` (``r21d-zoo predict``): what is in a video and when.

A video's answer has two parts. The *video-level* top-k averages the softmax of N uniformly spaced clips, N and the
crops as the weights' published protocol says (else 10 centre clips): the number the weights' accuracy was measured
with. The *timeline* scores sliding windows (``stride_sec`` apart, default back to back; the windows of
:class:`~r21d_zoo.infer.config.ExtractConfig`), optionally smoothed by a centred moving average over ``smooth``
windows, and keeps each window's top-k classes scoring at least ``threshold``. Windows are decoded in time order by
seeking, a batch at a time, so memory does not grow with the video's length.

Outputs per video (``-o OUT``, atomically): ``NAME.json`` (the Hugging Face video-classification shape, ``[{label,
score}]``, for the video and for each window with its start/end), ``NAME.csv`` (a row per window and rank),
``NAME.srt`` / ``NAME.vtt`` subtitles (a cue per window, from the midpoint with the previous window's centre to the
midpoint with the next one: the window whose centre is nearest is "now"), ``NAME.png`` with ``--plot`` (the scores
over time of the classes that lead some window) and ``NAME.annotated.mp4`` with ``--annotate`` (the video with the
current top labels drawn on it). With ``flow_model`` the two streams' probabilities are fused per window and per
video (``flow_weight`` for the flow stream), each read at its own clip settings from the same start times.
"""

import csv
import io
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
import numpy as np
import torch.nn as nn
from .._errors import InputError
from .._io import atomic_write
from .._progress import progress as show_progress
from ..models import ClipSpec
from ..video import open_video, uniform_clips
from ..video.reader import DEFAULT_DECODER
from .config import OUTPUTS, ExtractConfig, InferenceOptions, PredictConfig
from .features import FeatureRunner
from .gradcam import Explanation, explain
from .scores import clip_probs, model_classes, protocol_spec

_logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One video's answer. ``scores``: (windows, classes) probabilities after smoothing; ``times``: (windows, 2)
    start/end seconds; ``video_scores``: (classes,) the protocol clips' mean."""

    video: str
    labels: List[str]
    times: np.ndarray
    scores: np.ndarray
    video_scores: np.ndarray
    duration: float
    fps: float
    top_k: int = 5
    threshold: float = 0.0
    settings: Dict[str, Any] = field(default_factory=dict)

    def top(self, scores: np.ndarray, threshold: float = 0.0) -> List[Dict[str, Any]]:
        order = np.argsort(-scores, kind="stable")[: self.top_k]
        return [dict(label=self.labels[j], score=round(float(scores[j]), 6)) for j in order if scores[j] >= threshold]

    @property
    def predictions(self) -> List[Dict[str, Any]]:
        """The video-level top-k, ``[{label, score}]``."""
        return self.top(self.video_scores)

    @property
    def timeline(self) -> List[Dict[str, Any]]:
        """Per window: ``{start, end, predictions: [{label, score}]}`` (classes under the threshold left out)."""
        return [
            dict(start=round(float(s), 6), end=round(float(e), 6), predictions=self.top(p, self.threshold))
            for (s, e), p in zip(self.times, self.scores)
        ]

    def cue_spans(self) -> np.ndarray:
        """(windows, 2): when each window is the current one (its centre is the nearest), from 0 to the end."""
        centres = self.times.mean(1)
        mids = (centres[1:] + centres[:-1]) / 2
        end = max(self.duration, float(centres[-1]))
        return np.stack([np.concatenate([[0.0], mids]), np.concatenate([mids, [end]])], 1)

    def to_json(self) -> Dict[str, Any]:
        return dict(
            video=self.video, duration=self.duration, predictions=self.predictions, timeline=self.timeline,
            **self.settings,
        )


def _smooth(scores: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average over ``k`` windows (fewer at the ends)."""
    if k <= 1 or len(scores) < 2:
        return scores
    c = np.cumsum(np.pad(scores, ((1, 0), (0, 0))), 0)
    lo = np.clip(np.arange(len(scores)) - k // 2, 0, None)
    hi = np.clip(np.arange(len(scores)) + (k - k // 2), None, len(scores))
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


class Predictor:
    """:func:`predict` for many videos: the model's runners (and ``runtime="auto"``'s choice) are made once, here,
    instead of once per video. ``inference`` says where and how the models run (default: the fastest runtime on
    the model's device, measured once: :mod:`r21d_zoo.deploy.choice`)."""

    def __init__(
        self,
        model: nn.Module,
        cfg: Optional[PredictConfig] = None,
        *,
        flow_model: Optional[nn.Module] = None,
        flow_weight: float = 0.5,
        inference: Optional[InferenceOptions] = None,
        **overrides: Any,
    ) -> None:
        self.cfg = cfg = replace(cfg or PredictConfig(), **overrides)
        self.labels = model_classes(model)
        models = [(model, 1.0 - flow_weight if flow_model is not None else 1.0)]
        if flow_model is not None:
            if model_classes(flow_model) != self.labels:
                raise InputError(
                    "the flow model predicts other classes than the RGB model; fuse models of one label space"
                )
            models.append((flow_model, flow_weight))
        self.flow_weight = flow_weight if flow_model is not None else None
        inference = inference or InferenceOptions()
        self.window: List[Tuple[FeatureRunner, ClipSpec, float]] = []  # the timeline's runners
        self.videowide: List[Tuple[FeatureRunner, ClipSpec, float]] = []  # the video-level protocol's runners
        self.num_clips = 0
        for m, weight in models:
            clip = cfg.clip if m is model else {k: v for k, v in cfg.clip.items() if k not in ("mean", "std")}
            spec, self.num_clips = protocol_spec(m, clip, cfg.num_clips)
            timeline_spec = ClipSpec.from_model(m, **dict(clip, crop_mode=clip.get("crop_mode", "center")))
            sampling = ExtractConfig(batch_size=cfg.batch_size)
            self.window.append((FeatureRunner(m, timeline_spec, sampling, inference), timeline_spec, weight))
            self.videowide.append((FeatureRunner(m, spec, sampling, inference), spec, weight))

    def __call__(
        self, video: str, decoder: str = DEFAULT_DECODER, frames_fps: Optional[float] = None, progress: bool = False
    ) -> Prediction:
        cfg, first = self.cfg, self.window[0][1]
        with open_video(video, first, decoder, frames_fps=frames_fps) as reader:
            info = reader.info
            clips = ExtractConfig(stride_sec=cfg.stride_sec).clips_for(first, info)
            protocol_clips = uniform_clips(info.duration, first.clip_seconds(info.fps), self.num_clips)
            bar = show_progress(total=len(clips) + len(protocol_clips), desc=f"predict {Path(video).name}",
                                unit="clip", show=progress)  # fmt: skip
            scores = clip_probs(reader, clips, self.window, cfg.batch_size, bar)
            video_scores = clip_probs(reader, protocol_clips, self.videowide, cfg.batch_size, bar).mean(0)
            bar.close()
        settings = dict(
            clip=first.to_dict(), num_clips=self.num_clips, crop_mode=self.videowide[0][1].crop_mode,
            stride_sec=cfg.stride_sec, smooth=cfg.smooth, threshold=cfg.threshold,
            **(dict(flow_weight=self.flow_weight) if self.flow_weight is not None else {}),
        )  # fmt: skip
        return Prediction(
            video=str(video),
            labels=self.labels,
            times=np.array([[c.start, c.end] for c in clips], dtype=np.float64),
            scores=_smooth(scores, cfg.smooth),
            video_scores=video_scores,
            duration=float(info.duration),
            fps=float(info.fps),
            top_k=cfg.top_k,
            threshold=cfg.threshold,
            settings=settings,
        )


def predict(
    model: nn.Module,
    video: str,
    cfg: Optional[PredictConfig] = None,
    *,
    flow_model: Optional[nn.Module] = None,
    flow_weight: float = 0.5,
    device: Optional[str] = None,
    runtime: str = "auto",
    decoder: str = DEFAULT_DECODER,
    frames_fps: Optional[float] = None,
    progress: bool = False,
    **overrides: Any,
) -> Prediction:
    """The video-level top-k and the timeline of ``video`` (see the module docstring). Keyword overrides replace
    fields of ``cfg`` (``stride_sec=1.0``, ``smooth=3``); ``runtime``: see :class:`InferenceOptions` (for many
    videos, a :class:`Predictor` makes the runners once)."""
    inference = InferenceOptions(device=device, runtime=runtime)
    predictor = Predictor(model, cfg, flow_model=flow_model, flow_weight=flow_weight, inference=inference, **overrides)
    return predictor(video, decoder, frames_fps, progress)


def explain_top(
    model: nn.Module, p: Prediction, layer: str = "layer4", clip: Optional[Dict[str, Any]] = None,
    decoder: str = DEFAULT_DECODER, device: Optional[str] = None,
) -> Explanation:
    """Grad-CAM of the video's top class on the window where that class scores highest."""
    j = int(p.video_scores.argmax())
    start = float(p.times[int(p.scores[:, j].argmax()), 0])
    return explain(model, p.video, start, j, layer, clip, decoder, device)


def _stamp(t: float, sep: str) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def caption(predictions: List[Dict[str, Any]]) -> str:
    """``label (score)`` per class, one line each."""
    return "\n".join(f"{p['label']} ({p['score']:.2f})" for p in predictions)


def _cues(p: Prediction) -> List[Tuple[float, float, str]]:
    return [(float(s), float(e), caption(w["predictions"])) for (s, e), w in zip(p.cue_spans(), p.timeline)
            if w["predictions"]]


def srt_cue(i: int, start: float, end: float, text: str) -> str:
    """The ``i``-th cue (from 1) of an SRT file."""
    return f"{i}\n{_stamp(start, ',')} --> {_stamp(end, ',')}\n{text}\n\n"


def vtt_cue(start: float, end: float, text: str) -> str:
    """A cue of a WebVTT file (after its ``WEBVTT`` header)."""
    return f"{_stamp(start, '.')} --> {_stamp(end, '.')}\n{text}\n\n"


def to_srt(p: Prediction) -> str:
    return "".join(srt_cue(i, s, e, text) for i, (s, e, text) in enumerate(_cues(p), 1))


def to_vtt(p: Prediction) -> str:
    return "WEBVTT\n\n" + "".join(vtt_cue(s, e, text) for s, e, text in _cues(p))


def to_csv(p: Prediction) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["start", "end", "rank", "label", "score"])
    for w in p.timeline:
        for rank, c in enumerate(w["predictions"], 1):
            writer.writerow([w["start"], w["end"], rank, c["label"], c["score"]])
    return buf.getvalue()


def plot_timeline(p: Prediction, path: Path, max_classes: int = 8) -> Path:
    """The scores over time of the classes that lead some window (at most ``max_classes``, by peak score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    leaders = sorted(set(p.scores.argmax(1).tolist()), key=lambda j: -p.scores[:, j].max())[:max_classes]
    centres = p.times.mean(1)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for j in leaders:
        ax.plot(centres, p.scores[:, j], marker="o", markersize=3, label=p.labels[j])
    if p.threshold > 0:
        ax.axhline(p.threshold, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="time (s, window centres)", ylabel="score", ylim=(0, 1), xlim=(0, max(p.duration, centres[-1])),
           title=Path(p.video).name)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def annotate_video(p: Prediction, source: str, path: Path) -> Path:
    """``source`` re-encoded with the current window's top labels drawn in its top-left corner, frame by frame."""
    from PIL import Image, ImageDraw

    from ..video.writer import rewrite_video

    spans, texts = p.cue_spans(), [caption(w["predictions"]) for w in p.timeline]

    def labelled(t: float, frame: np.ndarray) -> np.ndarray:
        text = texts[min(int(np.searchsorted(spans[:, 1], t, side="right")), len(texts) - 1)]
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        if text:
            box = draw.multiline_textbbox((4, 4), text)
            draw.rectangle((0, 0, box[2] + 4, box[3] + 4), fill=(0, 0, 0))
            draw.multiline_text((4, 4), text, fill=(255, 255, 255))
        return np.asarray(image)[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]  # even sides for yuv420p

    atomic_write(path, lambda f: rewrite_video(source, f, labelled, max(1, round(p.fps))))
    return path


def write_outputs(
    p: Prediction, out: Path, name: str, outputs: Sequence[str] = OUTPUTS, plot: bool = False, annotate: bool = False
) -> List[Path]:
    """Write ``p`` as ``out/NAME.{json,csv,srt,vtt}`` (those in ``outputs``), ``NAME.png``, ``NAME.annotated.mp4``."""
    texts: Dict[str, Callable[[], str]] = dict(
        json=lambda: json.dumps(p.to_json(), indent=2) + "\n", csv=lambda: to_csv(p), srt=lambda: to_srt(p),
        vtt=lambda: to_vtt(p),
    )
    paths = []
    for kind in outputs:
        text = texts[kind]()
        paths.append(out / f"{name}.{kind}")
        atomic_write(paths[-1], lambda f: f.write(text.encode()))
    if plot:
        paths.append(plot_timeline(p, out / f"{name}.png"))
    if annotate:
        paths.append(annotate_video(p, p.video, out / f"{name}.annotated.mp4"))
    return paths
