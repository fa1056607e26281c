"""Fine-tuning with the papers' recipe (Ghadiyaram et al. 2019, sec. 3.3/4; Tran et al. 2018).

- ``mode="full"`` trains every layer (optionally with the first stages frozen and/or BN frozen); ``mode="fc"`` trains
  only the classifier on frozen features (BN in eval mode): the paper's "fc-only".
- SGD with momentum 0.9 and weight decay 1e-4 (none on BN/bias), the LR scaled linearly with the global batch,
  linear warmup, then step decay (or cosine); per-group LRs (``backbone_lr_mult`` for every layer but the classifier).
- The loop is :func:`r21d_zoo.train.loop.fit` (AMP, accumulation, checkpointing, DDP/SyncBN, exact resume, metrics);
  the best model by validation video top-1 is exported to ``out_dir/best`` and the last epoch's to ``out_dir/final``,
  each with its own classes, metrics and a card that names the model it started from.
- Validation and ``r21d-zoo evaluate`` score videos with :func:`r21d_zoo.infer.scores.evaluate`.
"""

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._errors import InputError
from .._io import writable_dir
from ..data.labelled import LabelledVideos, TrainClips
from ..deploy import save_pretrained
from ..models import ClipSpec, set_derived_cfg, stage_modules
from ..train.distributed import WorldInfo, default_device, init_distributed
from ..train.loop import FitResult, StepContext, StepOutput, fit
from ..video import train_augment
from ..video.transforms import mix_batch
from .configs import FinetuneConfig as FinetuneConfig, FinetuneJobConfig as FinetuneJobConfig, MODES, VAL_METRICS
from ..infer.config import ModelSource
from ..infer.scores import evaluate

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Fine-tuning


def _freeze(model: nn.Module, cfg: FinetuneConfig) -> List[nn.Module]:
    """Set ``requires_grad`` per the mode / frozen stages; returns the BN layers to keep in eval mode."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    frozen_bn: List[nn.Module] = []
    stages = stage_modules(model)
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
        notes=f"Fine-tuned ({cfg.mode}) from {base or f'random initialisation (seed {cfg.seed})'}{weights} on "
        f"{len(train)} videos of {len(train.classes)} classes ({data_name}).",
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


def run(cfg: FinetuneJobConfig) -> int:
    train = cfg.labels.read(cfg.train)
    if train.missing:
        _logger.warning(
            "%d of %d training videos are missing and are left out (first: %s)",
            len(train.missing), len(train), train.missing[0],
        )
        train = train.present()
    empty = train.classes_without_videos()
    if empty:
        _logger.warning(
            "%d class(es) have no training video, so the model cannot learn them: %s", len(empty), ", ".join(empty[:10])
        )
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
