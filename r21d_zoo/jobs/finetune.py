"""Fine-tuning and evaluation with the papers' protocol (Ghadiyaram et al. 2019, sec. 3.3/4; Tran et al. 2018).

- ``mode="full"`` trains every layer (optionally with the first stages frozen and/or BN frozen); ``mode="fc"`` trains
  only the classifier on frozen features (BN in eval mode): the paper's "fc-only".
- SGD with momentum 0.9 and weight decay 1e-4 (none on BN/bias), the LR scaled linearly with the global batch,
  linear warmup, then step decay (or cosine); per-group LRs (``backbone_lr_mult`` for every layer but the classifier).
- The loop is :func:`r21d_zoo.train.loop.fit` (AMP, accumulation, checkpointing, DDP/SyncBN, exact resume, metrics);
  the best model by validation video top-1 is exported to ``out_dir/best`` and the last epoch's to ``out_dir/final``,
  each with its own classes, metrics and a card that names the model it started from.
- :func:`evaluate`: N uniformly spaced clips x 1 or 3 crops (or fully-convolutional on the whole frame), softmax
  averaged over clips for video-level top-1/top-5, clip-level top-1/top-5, mAP for multi-label data, a per-class
  report and the confusion matrix. Under DDP every video is evaluated exactly once (``videos[rank::world]``, results
  gathered), so the counts equal a single-process run. :func:`evaluate_two_stream` fuses an RGB and a flow model
  (the weighted mean of their scores per clip and per video) and reports the fusion with each stream's metrics.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .._bounds import Checked, at_least, between
from .._errors import EXIT_PARTIAL, InputError, UsageError
from .._io import atomic_write, writable_dir, writable_file
from .._progress import progress as show_progress
from ..data.inputs import default_workers
from ..data.labelled import EvalClips, LabelledVideos, LabelOptions, TrainClips
from ..deploy import save_pretrained
from ..deploy.optimize import RUNTIME_HELP, RUNTIMES, optimize_for_inference
from ..deploy.runtime import AMP_HELP, Amp, Runtime
from ..models import ClipSpec, evaluation_protocol, set_derived_cfg
from ..train.distributed import WorldInfo, default_device, init_distributed
from ..train.loop import FitResult, StepContext, StepOutput, TrainConfig, fit, unwrap
from ..train.metrics import average_precision, confusion_matrix, per_class_report, topk_correct
from ..train.optim import OptimConfig
from ..video import VideoClassificationTransform, train_augment
from ..video.transforms import mix_batch
from .common import CLASSIFIER_MODEL, ModelSource, clip_field
from .figures import write_evaluation_figures

_logger = logging.getLogger(__name__)
MODES = ("full", "fc")
VAL_METRICS = ("video_top1", "video_top5", "clip_top1", "clip_top5", "mAP")


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


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
    runtime: str = "eager",
) -> Dict[str, Any]:
    """Clip- and video-level metrics of ``model`` on ``data``, ``num_clips`` clips of ``spec`` per video cropped by
    ``spec.crop_mode`` (see the module docstring). ``data`` must be labelled in the model's label space
    (:func:`model_classes`); classes absent from the data are reported as such. Every rank returns the metrics of the
    whole dataset; with ``keep_scores`` also ``video_scores``, one record per video (:func:`video_scores`).
    ``runtime``: ``eager`` (the model as it is) or one of :func:`~r21d_zoo.optimize_for_inference`'s."""
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
    runtime: str = "eager",
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
    runtime: str = "eager",
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
    place = Runtime.create(device, amp, channels_last=False)  # the model's memory format is the caller's
    if runtime != "eager":
        if fully_conv:
            raise UsageError("crop mode full runs the classifier as a conv over the whole clip, on runtime eager only")
        model, place = optimize_for_inference(model, amp=amp, runtime=runtime), Runtime(device)
    transform = VideoClassificationTransform.from_spec(spec).to(device)  # frames arrive resized: resize is a no-op
    shard = list(range(world.rank, len(data), world.world_size))  # no padding, no duplicates
    loader = DataLoader(EvalClips(data, spec, num_clips, shard), batch_size=None, num_workers=workers)
    pool = getattr(model, "global_pool", None)
    if fully_conv:
        model.global_pool = ""  # the classifier runs as a 1x1x1 conv over the whole clip
    results = []  # (index, video probs, clip probs, error)
    try:
        for clips, _, index, error in show_progress(loader, desc="evaluate", unit="video", show=world.is_primary):
            if error:
                results.append((index, None, None, error))
                continue
            x = transform(clips.to(device))
            with place.autocast():
                logits = model(x).float()
            if fully_conv:
                logits = logits.mean(dim=(2, 3, 4))
            probs = torch.sigmoid(logits) if data.multilabel else logits.softmax(-1)
            crops = 3 if spec.crop_mode == "three" else 1
            clip_probs = probs.view(len(clips), crops, -1).mean(1)
            results.append((index, clip_probs.mean(0).cpu(), clip_probs.cpu(), ""))
    finally:
        if fully_conv:
            model.global_pool = pool
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


# ---------------------------------------------------------------------------------------------------------------------
# Fine-tuning


def _finetune_optim() -> OptimConfig:
    return OptimConfig(epochs=8, warmup_epochs=1, step_epochs=4)


@dataclass
class FinetuneConfig(TrainConfig):
    """Fine-tune a model on labelled clips (full or fc-only) and evaluate it every epoch."""

    model: ModelSource = field(default_factory=ModelSource)
    mode: Literal["full", "fc"] = field(default="full", metadata=dict(help="fc: train only the classifier"))
    freeze_stages: int = field(
        default=0, metadata=dict(help="freeze the stem (1) and the first layers (2-5)", bound=between(0, 5))
    )
    freeze_bn: bool = field(default=False, metadata=dict(help="keep BatchNorm statistics and affine frozen"))
    backbone_lr_mult: float = field(
        default=1.0, metadata=dict(help="LR factor for all but the classifier", bound=at_least(0))
    )
    flip: bool = field(default=True, metadata=dict(help="random horizontal flips (off when left/right matters)"))
    jitter_scales: Optional[Tuple[int, int]] = field(
        default=None,
        metadata=dict(
            help="scale jitter: each training clip's short side drawn from LOW HIGH before the crop (VMZ: 128 160)",
            metavar="SIDE",
            bound=at_least(1),
        ),
    )
    mixup_alpha: float = field(
        default=0.0, metadata=dict(help="mixup of training batches, Beta(alpha, alpha) (0: off)", bound=at_least(0))
    )
    cutmix_alpha: float = field(
        default=0.0, metadata=dict(help="CutMix of training batches, Beta(alpha, alpha) (0: off)", bound=at_least(0))
    )
    num_clips: int = field(
        default=10,
        metadata=dict(
            help="uniformly spaced clips per validation video", deprecated=("--eval-clips",), bound=at_least(1)
        ),
    )
    stop_on_unreadable: bool = field(
        default=False, metadata=dict(help="stop when a validation video cannot be read (default: count and warn)")
    )
    clip: Dict[str, Any] = clip_field(help="clip settings (default: the weights'); --crop is the evaluation crop")
    optim: OptimConfig = field(default_factory=_finetune_optim)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.jitter_scales is not None and (
            len(self.jitter_scales) != 2 or self.jitter_scales[0] > self.jitter_scales[1]
        ):
            raise UsageError(
                f"--jitter-scales {' '.join(map(str, self.jitter_scales))}: must be two short sides, the smallest "
                "first (e.g. --jitter-scales 128 160)"
            )
        if self.jitter_scales is not None:
            self.jitter_scales = (int(self.jitter_scales[0]), int(self.jitter_scales[1]))


def _freeze(model: nn.Module, cfg: FinetuneConfig) -> List[nn.Module]:
    """Set ``requires_grad`` per the mode / frozen stages; returns the BN layers to keep in eval mode."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    frozen_bn: List[nn.Module] = []
    stages = model.stages
    n_frozen = len(stages) if cfg.mode == "fc" else cfg.freeze_stages
    for stage in stages[:n_frozen]:
        stage.requires_grad_(False)
        frozen_bn += [m for m in stage.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if cfg.freeze_bn or cfg.mode == "fc":
        frozen_bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in frozen_bn:
            m.requires_grad_(False)
    return frozen_bn


def starting_point(model: nn.Module, source: ModelSource) -> Optional[str]:
    """What a derived model started from: the weight tag, the hub repo or folder, or None for random init."""
    if not source.pretrained:
        return None
    cfg = model.pretrained_cfg
    if cfg.get("tag"):
        return f"{cfg['architecture']}.{cfg['tag']}"
    if source.name.startswith(("hf-hub:", "local-dir:")):
        return source.name.split(":", 1)[1]
    return cfg.get("base_model") or source.name  # a new head on registry weights: the tag it loaded


def finetune(
    train: LabelledVideos,
    val: Optional[LabelledVideos],
    cfg: FinetuneConfig,
    out_dir: Union[str, Path, None] = None,
    world: Optional[WorldInfo] = None,
    stop_after_epochs: Optional[int] = None,
    progress: bool = True,
) -> FitResult:
    """Fine-tune ``cfg.model`` on ``train``, evaluating on ``val`` after every epoch (see the module docstring)."""
    world = world or init_distributed()
    device = default_device(world, cfg.device)
    torch.manual_seed(cfg.seed)
    model = cfg.model.create(num_classes=len(train.classes))
    spec = ClipSpec.from_model(model, **cfg.clip)
    base = starting_point(model, cfg.model)
    data_name = Path(train.source).name if train.source else "in memory"
    weights = f" (weights from {cfg.model.checkpoint_path})" if cfg.model.checkpoint_path and base else ""
    set_derived_cfg(
        model,
        base_model=base,
        clip=spec,
        num_classes=len(train.classes),
        labels=tuple(train.classes),
        datasets=(Path(train.source).name,) if train.source else (),
        notes=f"Fine-tuned ({cfg.mode}) from {base or 'random initialisation'}{weights} on {len(train)} videos of "
        f"{len(train.classes)} classes ({data_name}).",
    )
    frozen_bn = _freeze(model, cfg)
    head = {id(p) for p in model.get_classifier().parameters()}
    groups = {
        "backbone": ([p for p in model.parameters() if id(p) not in head], cfg.backbone_lr_mult),
        "head": (list(model.get_classifier().parameters()), 1.0),
    }

    mixing = cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0
    # with scale jitter, clips are decoded at the largest short side and scaled down on the device
    decode_spec = ClipSpec.from_model(spec, resize_size=cfg.jitter_scales[1]) if cfg.jitter_scales else spec

    def step(net: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        clips, target = batch
        x = train_augment(clips.to(ctx.device, non_blocking=True), spec, cfg.flip, ctx.generator, cfg.jitter_scales)
        target = target.to(ctx.device)
        soft = target
        if mixing:  # soft targets: the mixed clips' label weights
            dense = target if train.multilabel else F.one_hot(target, len(train.classes)).float()
            x, soft = mix_batch(x, dense, cfg.mixup_alpha, cfg.cutmix_alpha, ctx.generator)
        x = ctx.prepare(x)
        with ctx.autocast():
            logits = net(x).float()
        if train.multilabel:
            return StepOutput(F.binary_cross_entropy_with_logits(logits, soft), len(clips))
        correct = float((logits.argmax(-1) == target).sum())
        return StepOutput(F.cross_entropy(logits, soft), len(clips), {"train_clip_top1": correct})

    def validate(net: nn.Module) -> Dict[str, Any]:
        metrics = evaluate(net, val, spec, cfg.num_clips, device, world, cfg.workers, cfg.amp)
        if metrics["failed"]:
            details = "; ".join(f"{path}: {error}" for path, error in list(metrics["errors"].items())[:3])
            if cfg.stop_on_unreadable:
                raise InputError(f"{metrics['failed']} validation video(s) could not be read: {details}")
            _logger.warning(
                "%d of %d validation videos could not be read and are left out of the metrics: %s",
                metrics["failed"],
                len(val),
                details,
            )
        out = {f"val_{k}": metrics[k] for k in VAL_METRICS if k in metrics}
        out.update(val_videos=metrics["videos"], val_failed=metrics["failed"])
        return out

    def export(net: nn.Module, path: Path, record: Dict[str, Any]) -> None:
        net.pretrained_cfg["metrics"] = [
            dict(
                dataset=Path(val.source).name if val.source else "validation",
                metric=k,
                value=record[f"val_{k}"],
                protocol=f"{cfg.num_clips} clips x {spec.crop_mode} crop, epoch {record['epoch']}",
                source="r21d-zoo finetune",
            )
            for k in VAL_METRICS
            if val is not None and f"val_{k}" in record
        ]
        save_pretrained(net, path)

    return fit(
        model,
        TrainClips(train, decode_spec, cfg.seed),
        step,
        cfg,
        groups,
        out_dir=out_dir,
        world=world,
        frozen_bn=frozen_bn,
        evaluate=validate if val is not None else None,
        monitor=("val_mAP" if train.multilabel else "val_video_top1") if val is not None else None,
        export=export,
        final_name="final",
        config=cfg,
        data={"validation data": val.fingerprint()} if val is not None else None,
        stop_after_epochs=stop_after_epochs,
        progress=progress,
    )


# ---------------------------------------------------------------------------------------------------------------------
# The commands


@dataclass
class FinetuneJobConfig:
    """Fine-tune on labelled clips (full or fc-only), evaluating every epoch; writes best/, final/, last.pt, metrics."""

    train: str = field(metadata=dict(help="labelled videos (any annotation format: see the README's table)"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="checkpoints, metrics, curves.png and the models"))
    val: Optional[str] = field(default=None, metadata=dict(help="validation split in the same formats"))
    labels: LabelOptions = field(default_factory=LabelOptions)
    settings: FinetuneConfig = field(default_factory=FinetuneConfig)


def run(cfg: FinetuneJobConfig) -> int:
    train = cfg.labels.read(cfg.train)
    val = cfg.labels.read(cfg.val, classes=train.classes, subset="test") if cfg.val else None
    writable_dir(cfg.out)
    result = finetune(train, val, cfg.settings, out_dir=cfg.out)
    last = result.history[-1] if result.history else {}
    print(
        json.dumps(
            dict(
                last_epoch=last,
                best_model=str(result.best_dir) if result.best_dir else None,
                final_model=str(result.final_dir) if result.final_dir else None,
            )
        )
    )
    return 0


@dataclass
class EvaluateJobConfig(Checked):
    """Clip- and video-level accuracy (or mAP) of a model on labelled videos."""

    data: str = field(metadata=dict(help="labelled videos (any annotation format: see the README's table)"))
    model: ModelSource = field(default_factory=lambda: ModelSource(CLASSIFIER_MODEL))
    flow_model: Optional[str] = field(
        default=None,
        metadata=dict(
            help="two-stream: a flow model (arch.tag, hf-hub:, local-dir:) whose scores are fused with --model's; "
            "both streams and the fusion are reported (weights as --model's: --random-weights covers both)"
        ),
    )
    flow_weight: float = field(
        default=0.5, metadata=dict(help="the flow stream's share of the fused scores", bound=between(0, 1))
    )
    num_clips: Optional[int] = field(
        default=None,
        metadata=dict(
            help="uniformly spaced clips per video (default: the published protocol's on its dataset, else 10)",
            bound=at_least(1),
        ),
    )
    clip: Dict[str, Any] = clip_field()
    labels: LabelOptions = field(default_factory=LabelOptions)
    output: Optional[str] = field(
        default=None,
        metadata=dict(help="write the full results (per class, confusion, top confusions) here, and beside it "
                      "NAME.confusion.png and NAME.per_class.png"),
    )
    save_scores: Optional[str] = field(
        default=None, metadata=dict(help="write every video's scores and top classes here (JSON lines)")
    )
    workers: int = field(default_factory=default_workers, metadata=dict(help="decoding processes", bound=at_least(0)))
    device: Optional[str] = field(default=None, metadata=dict(help="default: this rank's GPU, else the CPU"))
    amp: Amp = field(default="auto", metadata=dict(help=AMP_HELP))
    runtime: str = field(default="eager", metadata=dict(help=RUNTIME_HELP, choices=RUNTIMES))


def run_evaluate(cfg: EvaluateJobConfig) -> int:
    """Scores are over the model's classes: labels are mapped onto its label names (or indices)."""
    for path, flag in ((cfg.output, "--output"), (cfg.save_scores, "--save-scores")):
        if path:
            writable_file(path, flag)
    world = init_distributed()
    device = default_device(world, cfg.device)
    model = cfg.model.create().to(device)
    flow_model = ModelSource(cfg.flow_model, cfg.model.pretrained).create().to(device) if cfg.flow_model else None
    data = cfg.labels.read(cfg.data, classes=model_classes(model), subset="test")
    published = published_metrics(model, data)
    protocol = video_protocol(published)
    num_clips = cfg.num_clips or (protocol["num_clips"] if protocol else 10)
    spec = evaluation_spec(model, protocol, cfg.clip)
    args = (device, world, cfg.workers, cfg.amp, bool(cfg.save_scores), cfg.runtime)
    if flow_model is None:
        metrics = evaluate(model, data, spec, num_clips, *args)
        _add_published(metrics, published)
        streams = {"": (metrics, spec)}
    else:
        flow_published = published_metrics(flow_model, data)
        flow_clip = {k: v for k, v in cfg.clip.items() if k not in ("mean", "std")}  # --mean/--std: the RGB model's
        flow_spec = evaluation_spec(flow_model, video_protocol(flow_published), flow_clip)
        metrics = evaluate_two_stream(model, flow_model, data, spec, flow_spec, num_clips, cfg.flow_weight, *args)
        for (name, m), p in zip(metrics["streams"].items(), (published, flow_published)):
            _add_published(m, p)
        streams = {f"{name} stream ": (metrics["streams"][name], s) for name, s in (("rgb", spec), ("flow", flow_spec))}
    scores = metrics.pop("video_scores", [])
    if world.is_primary:
        metrics["excluded"] = data.excluded
        metrics["missing"] = data.missing  # listed but not on disk: among the failed
        keys = ("videos", "failed", "missing", "excluded", "video_top1", "video_top5", "clip_top1", "clip_top5", "mAP")
        if cfg.output:
            figures = write_evaluation_figures(metrics, Path(cfg.output))
            text = json.dumps(metrics, indent=2)
            atomic_write(cfg.output, lambda f: f.write(text.encode()))
            print(f"results -> {cfg.output}; figures -> {', '.join(map(str, figures))}")
        if cfg.save_scores:
            lines = "".join(json.dumps(r) + "\n" for r in scores)
            atomic_write(cfg.save_scores, lambda f: f.write(lines.encode()))
        summary = {k: metrics[k] for k in keys if k in metrics}
        if flow_model is not None:
            summary["flow_weight"] = cfg.flow_weight
            summary["streams"] = {n: {k: m[k] for k in keys if k in m} for n, m in metrics["streams"].items()}
        print(json.dumps(summary))
        for name, (m, s) in streams.items():
            for p in m.get("published", []):
                print(
                    f"{name}{p['metric']} on {p['dataset']}: measured {p['measured']:.3f}, published "
                    f"{p['published']:.3f} ({p['difference']:+.3f}); published protocol: {p['protocol']}; run with "
                    f"{num_clips} clips x {s.crop_mode} crop"
                )
    return EXIT_PARTIAL if metrics.get("failed") else 0


def video_protocol(published: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    return next((evaluation_protocol(m["protocol"]) for m in published if m["metric"].startswith("video")), None)


def evaluation_spec(model: nn.Module, protocol: Optional[Dict[str, Any]], clip: Dict[str, Any]) -> ClipSpec:
    """The model's clip with the user's settings, cropped as its published protocol says unless the user chose."""
    if protocol and "crop_mode" not in clip:
        clip = dict(clip, crop_mode=protocol["crop_mode"])
    return ClipSpec.from_model(model, **clip)


def _add_published(metrics: Dict[str, Any], published: List[Dict[str, Any]]) -> None:
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
