"""Fine-tuning and evaluation with the papers' protocol (Ghadiyaram et al. 2019, sec. 3.3/4; Tran et al. 2018).

- ``mode="full"`` trains every layer (optionally with the first stages frozen and/or BN frozen); ``mode="fc"`` trains
  only the classifier on frozen features (BN in eval mode): the paper's "fc-only".
- SGD with momentum 0.9 and weight decay 1e-4 (none on BN/bias), the LR scaled linearly with the global batch,
  linear warmup, then step decay (or cosine); per-group LRs (``backbone_lr_mult`` for every layer but the classifier).
- AMP (bf16/fp16) and channels_last_3d on GPU, gradient checkpointing, gradient accumulation, DDP with SyncBN.
- ``out_dir/last.pt`` holds model + config + optimizer + scheduler + scaler + RNG state, so a stopped run resumes
  identically; the best model by validation video top-1 is exported to ``out_dir/best`` (safetensors + config,
  ``create_model("local-dir:out_dir/best")``); ``metrics.jsonl``/``metrics.csv`` and ``curves.png`` per epoch.
- :func:`evaluate`: N uniformly spaced clips x 1 or 3 crops (or fully-convolutional on the whole frame), softmax
  averaged over clips for video-level top-1/top-5, clip-level top-1/top-5, mAP for multi-label data, a per-class
  report and the confusion matrix. Under DDP every video is evaluated exactly once (``videos[rank::world]``, results
  gathered), so the counts equal a single-process run.
"""

import csv
import io
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from ._io import atomic_write
from .data import ClipSpec, EvalClips, LabelledVideos, TrainClips, train_augment
from .distributed import WorldInfo, default_device, init_distributed
from .models import create_model, save_pretrained
from .train import (
    OptimConfig,
    autocast,
    build_optimizer,
    build_scheduler,
    epoch_seed,
    resume_training_state,
    save_training_state,
    unwrap,
    wrap_ddp,
)
from .transforms import VideoClassificationTransform

_logger = logging.getLogger(__name__)
MODES = ("full", "fc")


@dataclass
class EvalConfig:
    num_clips: int = 10
    crop_mode: str = "center"  # "center", "three", or "full" (fully convolutional on the resized frame)
    workers: int = 0
    amp: Optional[str] = "bf16"  # GPU only


@dataclass
class FinetuneConfig:
    model: str = "r2plus1d_34.ig65m_32f"
    pretrained: bool = True
    checkpoint_path: Optional[str] = None
    model_args: Dict[str, Any] = field(default_factory=dict)
    mode: str = "full"
    freeze_stages: int = 0  # 1 = stem, 2 = stem + layer1, ...
    freeze_bn: bool = False
    backbone_lr_mult: float = 1.0
    clip: ClipSpec = field(default_factory=ClipSpec)  # None fields are filled from the weights' config
    crop_size: Optional[int] = None
    flip: bool = True
    batch_size: int = 8  # per process
    accumulation: int = 1
    workers: int = 0
    amp: Optional[str] = "bf16"  # GPU only
    channels_last: Optional[bool] = None  # default: on GPU
    grad_checkpointing: bool = False
    sync_bn: bool = True
    seed: int = 0
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=0.01, reference_batch=64, epochs=8, warmup_epochs=1, step_epochs=4)
    )
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class FinetuneResult:
    model: nn.Module
    history: List[Dict[str, Any]]
    best_dir: Optional[Path]


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


def _topk_correct(probs: torch.Tensor, target: torch.Tensor, k: int) -> int:
    k = min(k, probs.shape[-1])
    return int((probs.topk(k, -1).indices == target.unsqueeze(-1)).any(-1).sum())


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class AP (area under the precision-recall steps, as sklearn's ``average_precision_score``); NaN for
    classes with no positives."""
    order = scores.argsort(0, descending=True)
    t = targets.gather(0, order).float()
    hits = t.cumsum(0)
    precision = hits / torch.arange(1, len(t) + 1, device=t.device).unsqueeze(1)
    positives = t.sum(0)
    return (precision * t).sum(0) / positives.where(positives > 0, torch.tensor(float("nan")))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: LabelledVideos,
    spec: ClipSpec,
    crop_size: int,
    cfg: EvalConfig = EvalConfig(),
    device: Union[str, torch.device, None] = None,
    world: Optional[WorldInfo] = None,
) -> Dict[str, Any]:
    """Clip- and video-level metrics of ``model`` on ``data`` (see the module docstring). Every rank returns the
    metrics of the whole dataset."""
    world = world or WorldInfo()
    device = torch.device(device) if device else next(model.parameters()).device
    model = unwrap(model).eval()
    fully_conv = cfg.crop_mode == "full"
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    transform = VideoClassificationTransform(None, crop_size, mean, std, crop_mode=cfg.crop_mode).to(device)
    shard = list(range(world.rank, len(data), world.world_size))  # no padding, no duplicates
    loader = DataLoader(EvalClips(data, spec, cfg.num_clips, shard), batch_size=None, num_workers=cfg.workers)
    pool = model.global_pool
    if fully_conv:
        model.global_pool = ""  # the classifier runs as a 1x1x1 conv over the whole clip
    results = []  # (index, video probs, clip probs, error)
    try:
        for clips, _, index, error in loader:
            if error:
                results.append((index, None, None, error))
                continue
            x = transform(clips.to(device))
            with autocast(device, cfg.amp):
                logits = model(x).float()
            if fully_conv:
                logits = logits.mean(dim=(2, 3, 4))
            probs = torch.sigmoid(logits) if data.multilabel else logits.softmax(-1)
            crops = 3 if cfg.crop_mode == "three" else 1
            clip_probs = probs.view(len(clips), crops, -1).mean(1)
            results.append((index, clip_probs.mean(0).cpu(), clip_probs.cpu(), ""))
    finally:
        model.global_pool = pool
    if world.world_size > 1 and dist.is_initialized():
        gathered: List[Any] = [None] * world.world_size
        dist.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
    results.sort(key=lambda r: r[0])
    return _metrics(data, results, cfg)


def _metrics(data: LabelledVideos, results, cfg: EvalConfig) -> Dict[str, Any]:
    errors = {data.samples[i].path: e for i, _, _, e in results if e}
    ok = [(i, v, c) for i, v, c, e in results if not e]
    out: Dict[str, Any] = dict(
        videos=len(ok),
        failed=len(errors),
        errors=errors,
        clips=sum(len(c) for _, _, c in ok),
        num_clips=cfg.num_clips,
        crop_mode=cfg.crop_mode,
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
    top1_video = _topk_correct(video_probs, targets, 1)
    out.update(
        video_top1=top1_video / len(ok),
        video_top5=_topk_correct(video_probs, targets, 5) / len(ok),
        clip_top1=_topk_correct(clip_probs, clip_targets, 1) / len(clip_targets),
        clip_top5=_topk_correct(clip_probs, clip_targets, 5) / len(clip_targets),
        video_correct=top1_video,
    )
    k = len(data.classes)
    pred = video_probs.argmax(-1)
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((targets, pred), torch.ones_like(targets), accumulate=True)
    per_class = {}
    for c, name in enumerate(data.classes):
        support, predicted, hit = int(confusion[c].sum()), int(confusion[:, c].sum()), int(confusion[c, c])
        per_class[name] = dict(
            support=support, recall=hit / support if support else None, precision=hit / predicted if predicted else None
        )
    out.update(per_class=per_class, confusion_matrix=confusion.tolist(), classes=data.classes)
    return out


def _multi_hot(labels, k: int) -> torch.Tensor:
    t = torch.zeros(k)
    t[list(labels)] = 1.0
    return t


# ---------------------------------------------------------------------------------------------------------------------
# Fine-tuning


def _build_model(cfg: FinetuneConfig, num_classes: int) -> nn.Module:
    model = create_model(
        cfg.model,
        pretrained=cfg.pretrained,
        checkpoint_path=cfg.checkpoint_path,
        num_classes=num_classes,
        **cfg.model_args,
    )
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


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


def _optimizer(model: nn.Module, cfg: FinetuneConfig, lr: float) -> torch.optim.Optimizer:
    """Two LR groups: the classifier at ``lr`` and everything else at ``lr * backbone_lr_mult``."""
    head = {id(p) for p in model.get_classifier().parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head]
    groups = {"backbone": (backbone, lr * cfg.backbone_lr_mult), "head": (model.get_classifier().parameters(), lr)}
    return build_optimizer(groups, cfg.optim)


def _resolve_clip(cfg: FinetuneConfig, model: nn.Module):
    data = model.pretrained_cfg
    spec = ClipSpec(
        num_frames=cfg.clip.num_frames or data["num_frames"],
        frame_rate=cfg.clip.frame_rate if cfg.clip.frame_rate is not None else data.get("frame_rate"),
        sampling_stride=cfg.clip.sampling_stride or data.get("sampling_stride", 1),
        resize_size=cfg.clip.resize_size or data["resize_size"],
    )
    return spec, cfg.crop_size or data["crop_size"]


def finetune(
    train: LabelledVideos,
    val: Optional[LabelledVideos],
    cfg: FinetuneConfig,
    out_dir: Union[str, Path, None] = None,
    device: Union[str, torch.device, None] = None,
    world: Optional[WorldInfo] = None,
    stop_after_epochs: Optional[int] = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune ``cfg.model`` on ``train``, evaluating on ``val`` after every epoch (see the module docstring)."""
    world = world or init_distributed()
    device = default_device(world, device)
    torch.manual_seed(cfg.seed)
    model = _build_model(cfg, len(train.classes))
    model.pretrained_cfg.update(label_names=tuple(train.classes), num_classes=len(train.classes), label_set=None)
    spec, crop = _resolve_clip(cfg, model)
    frozen_bn = _freeze(model, cfg)
    model.to(device)
    cuda = device.type == "cuda"
    channels_last = cuda if cfg.channels_last is None else cfg.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    lr = cfg.optim.scaled_lr(cfg.batch_size, world.world_size, cfg.accumulation)
    optimizer = _optimizer(model, cfg, lr)
    dataset = TrainClips(train, spec, cfg.seed)
    sampler = DistributedSampler(dataset, world.world_size, world.rank, shuffle=True, seed=cfg.seed, drop_last=False)
    loader = DataLoader(dataset, cfg.batch_size, sampler=sampler, num_workers=cfg.workers, pin_memory=cuda)
    steps_per_epoch = math.ceil(len(loader) / cfg.accumulation)
    scheduler = build_scheduler(optimizer, cfg.optim, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp == "fp16")
    ddp = wrap_ddp(model, world, device, cfg.sync_bn)
    out = Path(out_dir) if out_dir is not None else None
    history: List[Dict[str, Any]] = []
    start_epoch, best = 0, -1.0
    state = resume_training_state(out / "last.pt", unwrap(ddp), optimizer, scheduler, scaler) if out else None
    if state is not None:
        start_epoch, history, best = state["epoch"], state["history"], state["best"]
        _logger.info("resumed from %s at epoch %d", out / "last.pt", start_epoch)
    from tqdm.auto import tqdm

    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    end_epoch = cfg.optim.epochs if stop_after_epochs is None else min(cfg.optim.epochs, stop_after_epochs)
    best_dir = out / "best" if out is not None and (out / "best").exists() else None
    for epoch in range(start_epoch, end_epoch):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        aug = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, 10**6 + world.rank))
        ddp.train()
        for m in frozen_bn:
            m.eval()
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
            leave=False,
            disable=not (progress and world.is_primary and sys.stderr.isatty()),
        )
        optimizer.zero_grad(set_to_none=True)
        for step, (clips, target) in enumerate(bar):
            x = train_augment(clips.to(device, non_blocking=True), crop, mean, std, cfg.flip, aug)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            target = target.to(device)
            with autocast(device, cfg.amp):
                logits = ddp(x).float()
            loss = (
                F.binary_cross_entropy_with_logits(logits, target)
                if train.multilabel
                else F.cross_entropy(logits, target)
            )
            scaler.scale(loss / cfg.accumulation).backward()
            if (step + 1) % cfg.accumulation == 0 or step + 1 == len(loader):
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
            seen += len(clips)
            loss_sum += float(loss.detach()) * len(clips)
            if not train.multilabel:
                correct += int((logits.argmax(-1) == target).sum())
            bar.set_postfix(
                loss=f"{float(loss.detach()):.3f}",
                lr=f"{scheduler.get_last_lr()[0]:.3g}",
                clips_per_s=f"{seen / (time.perf_counter() - t0):.1f}",
            )
        record: Dict[str, Any] = dict(
            epoch=epoch + 1,
            train_loss=loss_sum / max(1, seen),
            lr=scheduler.get_last_lr()[0],
            train_clips_per_s=seen / (time.perf_counter() - t0),
        )
        if not train.multilabel:
            record["train_clip_top1"] = correct / max(1, seen)
        if val is not None:
            metrics = evaluate(ddp, val, spec, crop, cfg.eval, device, world)
            record.update(
                {
                    f"val_{k}": v
                    for k, v in metrics.items()
                    if k in ("video_top1", "video_top5", "clip_top1", "clip_top5", "mAP")
                }
            )
        history.append(record)
        _logger.info("epoch %d: %s", epoch + 1, record)
        score = record.get("val_video_top1", record.get("val_mAP", -record["train_loss"]))
        if out is not None and world.is_primary:
            if score > best:
                best = score
                best_dir = out / "best"
                save_pretrained(unwrap(ddp), best_dir)
            model_ = unwrap(ddp)
            save_training_state(
                out / "last.pt",
                model_,
                optimizer,
                scheduler,
                scaler,
                epoch=epoch + 1,
                history=history,
                best=best,
                config=cfg,
                model_args=model_._model_args,
                pretrained_cfg=model_.pretrained_cfg,
            )
            write_metrics(out, history)
    return FinetuneResult(unwrap(ddp), history, best_dir)


def write_metrics(out: Path, history: List[Dict[str, Any]]) -> None:
    """``metrics.json``, ``metrics.csv`` and ``curves.png`` (loss and accuracy per epoch), each written atomically."""

    def atomic(name: str, data: bytes) -> None:
        atomic_write(out / name, lambda f: f.write(data))

    atomic("metrics.json", json.dumps(history, indent=2).encode())
    keys = sorted({k for h in history for k in h}, key=lambda k: (k != "epoch", k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic("metrics.csv", buf.getvalue().encode())
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _logger.warning("matplotlib is not installed; skipping curves.png (pip install matplotlib)")
        return
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    a.set_xlabel("epoch")
    a.legend()
    for key in ("train_clip_top1", "val_clip_top1", "val_video_top1", "val_mAP"):
        if any(key in h for h in history):
            b.plot(epochs, [h.get(key) for h in history], marker="o", label=key)
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic("curves.png", buf.getvalue())
