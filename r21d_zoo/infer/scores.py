"""Scores of labelled videos and their fusion: N uniformly spaced clips x 1 or 3 crops (or fully-convolutional on the
whole frame), softmax (sigmoid for multi-label data) averaged over clips and crops into a video's scores
(:func:`score_videos`, the one place this average is taken); two streams fused by the weighted mean of their scores
(:func:`fuse_scores`); the metrics of :func:`evaluate` and :func:`evaluate_two_stream` (video- and clip-level
top-1/top-5, mAP, a per-class report and the confusion matrix). Under DDP every video is scored exactly once
(``videos[rank::world]``, results gathered), so the counts equal a single-process run.
"""

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader

from .._errors import InputError, UsageError
from .._progress import progress as show_progress
from .._world import WorldInfo
from ..data.labelled import EvalClips, LabelledVideos
from ..deploy.optimize import optimize_for_inference
from ..deploy.placement import Placement
from ..models import ClipSpec, evaluation_protocol
from ..video import VideoClassificationTransform
from ..video.reader import Clip, VideoReader
from .config import DEFAULT_CLIPS
from .features import FeatureRunner, auto_runtime
from .metrics import average_precision, confusion_matrix, per_class_report, topk_correct

_logger = logging.getLogger(__name__)


# one per video, in dataset order: (index, video scores (K,), clip scores (clips, K), error); scores None on error
VideoResult = Tuple[int, Optional[torch.Tensor], Optional[torch.Tensor], str]


def evaluate(
    model: nn.Module,
    data: LabelledVideos,
    spec: ClipSpec,
    num_clips: int = 10,
    device: Union[str, torch.device, None] = None,
    world: Optional[WorldInfo] = None,
    workers: int = 0,
    amp: Optional[str] = "auto",
    keep_scores: bool = False,
    runtime: str = "auto",
) -> Dict[str, Any]:
    """Clip- and video-level metrics of ``model`` on ``data``, ``num_clips`` clips of ``spec`` per video cropped by
    ``spec.crop_mode`` (see the module docstring). ``data`` must be labelled in the model's label space
    (:func:`model_classes`); classes absent from the data are reported as such. Every rank returns the metrics of the
    whole dataset; with ``keep_scores`` also ``video_scores``, one record per video (:func:`video_scores`).
    ``runtime``: ``auto`` (the fastest here, measured once: :mod:`r21d_zoo.deploy.choice`), ``eager`` (the model as
    it is) or one of :func:`~r21d_zoo.optimize_for_inference`'s."""
    results = score_videos(model, data, spec, num_clips, device, world, workers, amp, runtime)
    return _report(data, results, num_clips, spec.crop_mode, keep_scores)


def evaluate_two_stream(
    model: nn.Module,
    flow_model: nn.Module,
    data: LabelledVideos,
    spec: ClipSpec,
    flow_spec: ClipSpec,
    num_clips: int = 10,
    flow_weight: float = 0.5,
    device: Union[str, torch.device, None] = None,
    world: Optional[WorldInfo] = None,
    workers: int = 0,
    amp: Optional[str] = "auto",
    keep_scores: bool = False,
    runtime: str = "auto",
) -> Dict[str, Any]:
    """Two-stream evaluation: ``model`` on ``spec``'s RGB clips and ``flow_model`` on ``flow_spec``'s flow clips, at
    the same ``num_clips`` positions per video; each clip's and each video's scores are ``(1 - flow_weight) * rgb +
    flow_weight * flow`` (late fusion of the streams' softmax, as two-stream networks since Simonyan & Zisserman).
    Returns the fused metrics (as :func:`evaluate`) with ``streams: {rgb, flow}``, each stream's own metrics."""
    if model_classes(model) != model_classes(flow_model):
        raise InputError("the RGB and flow models predict different classes: fusion needs one label space")
    if flow_spec.modality != "flow":
        raise UsageError("the flow stream's model takes RGB input: pass a flow model (its weights' modality is flow)")
    streams = {
        name: score_videos(m, data, s, num_clips, device, world, workers, amp, runtime)
        for name, m, s in (("rgb", model, spec), ("flow", flow_model, flow_spec))
    }
    fused = fuse_scores(list(streams.values()), (1 - flow_weight, flow_weight))
    crop_mode = spec.crop_mode if spec.crop_mode == flow_spec.crop_mode else f"{spec.crop_mode}+{flow_spec.crop_mode}"
    metrics = _report(data, fused, num_clips, crop_mode, keep_scores)
    metrics["flow_weight"] = flow_weight
    metrics["streams"] = {
        name: _metrics(data, results, num_clips, s.crop_mode)
        for (name, results), s in zip(streams.items(), (spec, flow_spec))
    }
    return metrics


def fuse_scores(streams: Sequence[List[VideoResult]], weights: Sequence[float]) -> List[VideoResult]:
    """The weighted sum of the streams' scores, video by video (each stream's results in dataset order); a video
    that failed in any stream fails, with that stream's error."""
    fused = []
    for per_video in zip(*streams):
        index = per_video[0][0]
        error = next((r[3] for r in per_video if r[3]), "")
        if error:
            fused.append((index, None, None, error))
            continue
        video = sum(w * r[1] for w, r in zip(weights, per_video))
        clips = [r[2] for r in per_video]
        clip = sum(w * c for w, c in zip(weights, clips)) if len({c.shape for c in clips}) == 1 else video[None]
        fused.append((index, video, clip, ""))
    return fused


def _report(
    data: LabelledVideos, results: List[VideoResult], num_clips: int, crop_mode: str, keep_scores: bool
) -> Dict[str, Any]:
    metrics = _metrics(data, results, num_clips, crop_mode)
    if keep_scores:
        metrics["video_scores"] = video_scores(data, results)
    return metrics


@torch.no_grad()
def score_videos(
    model: nn.Module,
    data: LabelledVideos,
    spec: ClipSpec,
    num_clips: int = 10,
    device: Union[str, torch.device, None] = None,
    world: Optional[WorldInfo] = None,
    workers: int = 0,
    amp: Optional[str] = "auto",
    runtime: str = "auto",
) -> List[VideoResult]:
    """Every video's clip and video scores (softmax, or sigmoid for multi-label data), on every rank, in dataset
    order; see :func:`evaluate`."""
    world = world or WorldInfo()
    device = torch.device(device) if device else next(model.parameters()).device
    model = unwrap(model).eval()
    if len(data.classes) != model.num_classes:
        raise InputError(
            f"{data.source or 'the data'} is labelled with {len(data.classes)} classes but the model has "
            f"{model.num_classes}; read it with classes=model_classes(model)"
        )
    fully_conv = spec.crop_mode == "full"
    place = Placement.create(device, amp, channels_last=False)  # the model's memory format is the caller's
    transform = VideoClassificationTransform.from_spec(spec).to(device)  # frames arrive resized: resize is a no-op
    if runtime == "auto" and fully_conv:
        runtime = "eager"  # whole frames of any size: the only runtime that takes them
    elif runtime == "auto":
        runtime = auto_runtime(model, spec, transform, num_clips, amp, device, beside_decoders=workers > 0)
    if runtime != "eager":
        if fully_conv:
            raise UsageError("crop mode full feeds whole frames of any size, which runs on runtime eager only")
        model, place = optimize_for_inference(model, amp=amp, runtime=runtime), Placement(device)
    shard = list(range(world.rank, len(data), world.world_size))  # no padding, no duplicates
    loader = DataLoader(EvalClips(data, spec, num_clips, shard), batch_size=None, num_workers=workers)
    results = []  # (index, video probs, clip probs, error)
    for clips, _, index, error in show_progress(loader, desc="evaluate", unit="video", show=world.is_primary):
        if error:
            results.append((index, None, None, error))
            continue
        x = transform(clips.to(device))
        with place.autocast():  # crop mode full: the classifier at every position of the whole frame, averaged
            logits = model(x).float()  # = the classifier on the averaged features, as it is affine
        probs = torch.sigmoid(logits) if data.multilabel else logits.softmax(-1)
        crops = 3 if spec.crop_mode == "three" else 1
        clip_probs = probs.view(len(clips), crops, -1).mean(1)
        results.append((index, clip_probs.mean(0).cpu(), clip_probs.cpu(), ""))
    if world.world_size > 1 and dist.is_initialized():
        gathered: List[Any] = [None] * world.world_size
        dist.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
    results.sort(key=lambda r: r[0])
    return results


def video_scores(data: LabelledVideos, results: List[VideoResult], top: int = 5) -> List[Dict[str, Any]]:
    """Per video (or segment): its path, the dataset's key and segment, the true labels, the top classes, every
    class's video-level score, and what else the annotation says of it (EPIC-Kitchens: the verb and noun of the
    action, so a verb model's and a noun model's scores can be joined by narration into action accuracy)."""
    records = []
    for i, probs, _, error in results:
        s = data.samples[i]
        record: Dict[str, Any] = dict(path=s.path, key=s.key, labels=[data.classes[j] for j in s.labels])
        if s.segment:
            record["segment"] = [s.start, s.end]
        if s.annotation:
            record["annotation"] = s.annotation
        if error:
            record["error"] = error
        else:
            best = probs.topk(min(top, len(probs)))
            record["top"] = [dict(label=data.classes[j], score=round(float(p), 6)) for p, j in zip(*best)]
            record["scores"] = [round(float(p), 6) for p in probs]
        records.append(record)
    return records


def _metrics(data: LabelledVideos, results: List[VideoResult], num_clips: int, crop_mode: str) -> Dict[str, Any]:
    errors = {data.samples[i].path: e for i, _, _, e in results if e}
    ok = [(i, v, c) for i, v, c, e in results if not e]
    out: Dict[str, Any] = dict(
        videos=len(ok),
        failed=len(errors),
        errors=errors,
        clips=sum(len(c) for _, _, c in ok),
        num_clips=num_clips,
        crop_mode=crop_mode,
    )
    if not ok:
        return out
    video_probs = torch.stack([v for _, v, _ in ok])
    if data.multilabel:
        targets = torch.stack([_multi_hot(data.samples[i].labels, len(data.classes)) for i, _, _ in ok])
        ap = average_precision(video_probs, targets)
        out.update(mAP=float(ap.nanmean()), per_class_ap={c: float(a) for c, a in zip(data.classes, ap)})
        return out
    targets = torch.tensor([data.samples[i].labels[0] for i, _, _ in ok])
    clip_probs = torch.cat([c for _, _, c in ok])
    clip_targets = torch.cat([torch.full((len(c),), data.samples[i].labels[0]) for i, _, c in ok])
    top1_video = topk_correct(video_probs, targets, 1)
    out.update(
        video_top1=top1_video / len(ok),
        video_top5=topk_correct(video_probs, targets, 5) / len(ok),
        clip_top1=topk_correct(clip_probs, clip_targets, 1) / len(clip_targets),
        clip_top5=topk_correct(clip_probs, clip_targets, 5) / len(clip_targets),
        video_correct=top1_video,
    )
    confusion = confusion_matrix(targets, video_probs.argmax(-1), len(data.classes))
    per_class = per_class_report(confusion, data.classes)
    out.update(
        per_class=per_class,
        confusion_matrix=confusion.tolist(),
        classes=data.classes,
        absent_classes=[name for name, row in per_class.items() if not row["support"]],
    )
    return out


def model_classes(model: nn.Module) -> List[str]:
    """The label space a model predicts: its label names, or ``"0" .. "num_classes - 1"`` when it has none."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    return list(names) if names and len(names) == model.num_classes else [str(i) for i in range(model.num_classes)]


def _multi_hot(labels, k: int) -> torch.Tensor:
    t = torch.zeros(k)
    t[list(labels)] = 1.0
    return t


def video_protocol(published: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    return next((evaluation_protocol(m["protocol"]) for m in published if m["metric"].startswith("video")), None)


def evaluation_spec(model: nn.Module, protocol: Optional[Dict[str, Any]], clip: Dict[str, Any]) -> ClipSpec:
    """The model's clip with the user's settings, cropped as its published protocol says unless the user chose."""
    if protocol and "crop_mode" not in clip:
        clip = dict(clip, crop_mode=protocol["crop_mode"])
    return ClipSpec.from_model(model, **clip)


def add_published(metrics: Dict[str, Any], published: List[Dict[str, Any]]) -> None:
    """Beside the measured metrics, the published numbers for them and the difference (in points)."""
    if published:
        metrics["published"] = [
            dict(
                metric=m["metric"],
                dataset=m["dataset"],
                published=m["value"],
                measured=round(100 * metrics[m["metric"]], 3),
                difference=round(100 * metrics[m["metric"]] - m["value"], 3),
                protocol=m["protocol"],
            )
            for m in published
            if m["metric"] in metrics
        ]


def published_metrics(model: nn.Module, data: LabelledVideos) -> List[Dict[str, Any]]:
    """The metrics published for the model's weights on the dataset ``data`` is (Kinetics-400 validation annotations
    scored with a Kinetics-400 head), else none."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    dataset = "kinetics400-val" if data.format == "kinetics" and cfg.get("label_set") == "kinetics400" else None
    return [m for m in cfg.get("metrics") or [] if dataset and m.get("dataset") == dataset]


def clip_probs(
    reader: VideoReader, clips: Sequence[Clip], streams: Sequence[Tuple[FeatureRunner, ClipSpec, float]],
    batch_size: int, bar: Any = None,
) -> np.ndarray:
    """The fused softmax (clips, classes) of ``clips``, a batch at a time, in their order."""
    out = []
    for i in range(0, len(clips), batch_size):
        part = clips[i : i + batch_size]
        fused = 0.0
        for runner, spec, weight in streams:
            frames = torch.stack([reader.read_spec_clip(c.start, spec).frames for c in part])
            logits = runner.logits(frames)
            fused = fused + weight * logits.softmax(-1).view(len(part), runner.crops, -1).mean(1)
        out.append(fused.numpy())
        if bar is not None:
            bar.update(len(part))
    return np.concatenate(out).astype(np.float64)


def protocol_spec(model: nn.Module, clip: Dict[str, Any], num_clips: Optional[int]) -> Tuple[ClipSpec, int]:
    """The model's clip and the video-level clip count and crop of its first published video-level protocol (on any
    dataset: a video to predict on has none)."""
    protocol = video_protocol((getattr(model, "pretrained_cfg", None) or {}).get("metrics") or [])
    return evaluation_spec(model, protocol, clip), num_clips or (protocol["num_clips"] if protocol else DEFAULT_CLIPS)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
