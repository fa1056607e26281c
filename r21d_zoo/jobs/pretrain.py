"""Weakly-supervised pre-training on streamed shards: the IG-65M recipe (Ghadiyaram et al. 2019, sec. 3.3).

- Data: WebDataset shards (``r21d-zoo shards pack``) streamed by :class:`~r21d_zoo.data.shards.ShardStream`, split by
  rank then worker, with ``natural``/``sqrt``/``uniform`` label sampling, a subset (``--include``, e.g. from
  ``r21d-zoo shards subset``) and an exclusion list (``--exclude``, from ``r21d-zoo dedup``). Clips are resized to
  128x171, randomly cropped to 112 and temporally jittered (a random start per emitted copy).
- Loss on the labels of a video: ``softmax`` cross-entropy against the label vector normalised to sum 1 (the
  expectation of the paper's "one hashtag sampled per video"), ``sample-one`` (that sampling itself, one label per
  clip) or ``sigmoid`` (binary cross-entropy per label).
- Schedule in clips processed, not epochs (:func:`~r21d_zoo.train.optim.ig65m_schedule`): the LR scaled
  linearly from a reference batch, warmed up, then halved 13 times at equal intervals. BN statistics per GPU by
  default (the paper's; ``--sync-bn`` to share them), bf16 and channels_last on GPU, gradient checkpointing as an
  option for 32-frame clips.
- The loop is :func:`~r21d_zoo.train.loop.fit_stream`: checkpoints every ``--checkpoint-every`` clips that resume
  mid-stream exactly, metrics and curves by clips processed, and the model exported to ``OUT/final`` with its label
  names and clip settings, so ``create_model("local-dir:OUT/final")``, ``finetune --model local-dir:OUT/final`` and
  ``extract --model local-dir:OUT/final`` use it.
"""

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..deploy import save_pretrained
from ..models import ClipSpec, set_derived_cfg
from ..video import train_augment
from .._errors import InputError
from .._io import writable_dir
from ..data.shards import (
    SAMPLINGS,
    ShardSet,
    ShardStream,
    label_stats,
    open_shards,
    read_key_list,
    selection_digest,
    shards_digest,
)
from ..train.distributed import WorldInfo, init_distributed
from ..train.loop import FitResult, StepContext, StepOutput, fit_stream
from .configs import PretrainConfig as PretrainConfig, PretrainJobConfig as PretrainJobConfig
from ..infer.config import create_with_args

_logger = logging.getLogger(__name__)
LOSSES = ("softmax", "sample-one", "sigmoid")


def shard_classes(shards: ShardSet, label_counts: Optional[Dict[str, int]]) -> List[str]:
    """The label space: the packed index's classes, else the labels counted by ``shards stats`` (sorted)."""
    if shards.classes:
        return list(shards.classes)
    if label_counts:
        return sorted(label_counts)
    raise InputError("the shards have no index.json with classes: pass --stats (from `r21d-zoo shards stats -o`)")


def pretrain_loss(logits: torch.Tensor, target: torch.Tensor, loss: str, g: torch.Generator) -> torch.Tensor:
    """The batch's mean loss. ``target``: class indices, or rows of label vectors normalised to sum 1."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if target.dim() == 1:
        target = F.one_hot(target, logits.shape[-1]).float()
    if loss == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits, (target > 0).float())
    if loss == "sample-one":
        return F.cross_entropy(logits, torch.multinomial(target.cpu(), 1, generator=g).squeeze(1).to(logits.device))
    return F.cross_entropy(logits, target)


def pretrain(
    shards: ShardSet,
    cfg: PretrainConfig,
    out_dir: Union[str, Path, None] = None,
    world: Optional[WorldInfo] = None,
    label_counts: Optional[Dict[str, int]] = None,
    label_sets: Optional[List[Tuple[List[str], int]]] = None,
    include: Optional[Set[str]] = None,
    exclude: Optional[Set[str]] = None,
    stop_after_samples: Optional[int] = None,
    progress: bool = True,
) -> FitResult:
    """Pre-train a new ``cfg.model`` on ``shards`` (see the module docstring). ``label_counts`` and ``label_sets``
    (videos per label, and the label sets of multi-label videos, over the samples ``include``/``exclude`` select,
    from ``r21d-zoo shards stats`` given the same lists) are counted in one pass when ``cfg.sampling`` needs them and
    none are given.
    With ``out_dir``: ``last.pt`` every ``cfg.checkpoint_every`` clips (resumed from when present), metrics, and
    the model exported to ``out_dir/final``."""
    if cfg.sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {cfg.sampling!r}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg.loss!r}")
    world = world or init_distributed()
    if cfg.sampling != "natural" and not label_counts:
        _logger.info("counting labels for %s sampling (pass `r21d-zoo shards stats` counts to skip)", cfg.sampling)
        stats = label_stats(shards, include, exclude)
        label_counts, label_sets = stats["label_counts"], stats["label_sets"]
    classes = shard_classes(shards, label_counts)
    torch.manual_seed(cfg.seed)
    model = create_with_args(cfg.model, cfg.model_args, num_classes=len(classes))
    spec = ClipSpec.from_model(model, **cfg.clip)
    stream = ShardStream(
        shards,
        spec,
        classes,
        cfg.sampling,
        label_counts,
        label_sets,
        cfg.seed,
        world,
        include,
        exclude,
        multilabel=shards.multilabel,
        shuffle=cfg.shuffle_buffer,
    )
    name = Path(shards.urls[0]).parent.name if shards.urls else "shards"
    set_derived_cfg(
        model,
        base_model=None,
        clip=spec,
        num_classes=len(classes),
        labels=tuple(classes),
        datasets=(name,),
        notes=f"Pre-trained from random initialisation (seed {cfg.seed}) on {cfg.optim.samples} clips of {name} "
        f"({len(classes)} labels, {cfg.sampling} sampling, {cfg.loss} loss).",
    )

    def step(net: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        clips, target = batch[0], batch[1].to(ctx.device)
        x = ctx.prepare(train_augment(clips.to(ctx.device, non_blocking=True), spec, cfg.flip, ctx.generator))
        with ctx.autocast():
            logits = net(x).float()
        predicted = logits.argmax(-1)
        hits = (predicted == target) if target.dim() == 1 else target.gather(1, predicted[:, None]).squeeze(1) > 0
        return StepOutput(
            pretrain_loss(logits, target, cfg.loss, ctx.generator), len(clips), {"train_clip_top1": float(hits.sum())}
        )

    def export(net: nn.Module, path: Path, record: Dict[str, Any]) -> None:
        save_pretrained(net, path)

    return fit_stream(
        model,
        stream,
        step,
        cfg,
        {"model": (model.parameters(), 1.0)},
        checkpoint_every=cfg.checkpoint_every,
        out_dir=out_dir,
        world=world,
        export=export,
        final_name="final",
        config=cfg,
        stop_after_samples=stop_after_samples,
        progress=progress,
        desc="pretrain",
    )


def run(cfg: PretrainJobConfig) -> int:
    shards = open_shards(cfg.shards)
    include, exclude = read_key_list(cfg.include), read_key_list(cfg.exclude)
    counts = sets = None
    if cfg.stats:
        try:
            stats = json.loads(Path(cfg.stats).read_text(encoding="utf-8"))
            counts, sets = stats["label_counts"], stats.get("label_sets")
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"--stats {cfg.stats}: not the JSON of `r21d-zoo shards stats -o` ({e})") from e
        if stats.get("shards", shards_digest(shards)) != shards_digest(shards):
            raise InputError(
                f"--stats {cfg.stats} counts the labels of other shards than {cfg.shards}, so "
                f"{cfg.settings.sampling} sampling would miss its shares; count these: r21d-zoo shards stats "
                f"{cfg.shards} -o STATS.json, and pass that file"
            )
        if stats.get("selection", selection_digest(None, None)) != selection_digest(include, exclude):
            lists = "".join(f" --{k} {v}" for k, v in (("include", cfg.include), ("exclude", cfg.exclude)) if v)
            raise InputError(
                f"--stats {cfg.stats} counts the labels of other videos than --include/--exclude select here, so "
                f"{cfg.settings.sampling} sampling would miss its shares; count them again: r21d-zoo shards stats "
                f"{cfg.shards}{lists} -o {cfg.stats}"
            )
        shards.multilabel = shards.multilabel or stats.get("multilabel_videos", 0) > 0  # shard URLs without index
        if sets is None and stats.get("multilabel_videos", 0) and cfg.settings.sampling != "natural":
            _logger.warning(
                "--stats %s was written by an earlier version, without the label sets of multi-label videos: "
                "sampling falls back to each label's own ratio and misses its shares; count again with "
                "`r21d-zoo shards stats`",
                cfg.stats,
            )
    writable_dir(cfg.out)
    result = pretrain(
        shards, cfg.settings, cfg.out, label_counts=counts, label_sets=sets, include=include, exclude=exclude
    )
    if result.final_dir is not None:
        print(f"model exported to {result.final_dir} (load with create_model('local-dir:{result.final_dir}'))")
    return 0
