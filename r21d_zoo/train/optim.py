"""Optimisers and schedules: SGD with the papers' linear LR scaling, the epoch schedule (warmup, then step or cosine
decay) and the IG-65M schedule in clips processed (warmup, then halvings); one config class each, with no field
declared twice."""

import math
from typing import Dict, Iterable, Tuple

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR

from .config import OptimConfig as OptimConfig, SampleOptimConfig as SampleOptimConfig, SGDConfig as SGDConfig


def lr_factor(cfg: OptimConfig, step: int, steps_per_epoch: int) -> float:
    epoch = step / max(1, steps_per_epoch)
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (step + 1) / (cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        span = max(1e-9, cfg.epochs - cfg.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch - cfg.warmup_epochs) / span)))
    if cfg.schedule == "step":
        return cfg.gamma ** int(epoch // cfg.step_epochs)
    raise ValueError(f"schedule must be 'step' or 'cosine', got {cfg.schedule!r}")


def sample_lr_factor(cfg: SampleOptimConfig, samples: int, global_batch: int) -> float:
    """The LR factor of the optimizer step that starts after ``samples`` clips (warmup reaches 1 at the step that
    ends at ``warmup_samples`` when every batch is full)."""
    if samples < cfg.warmup_samples:
        return min(1.0, (samples + global_batch) / cfg.warmup_samples)
    span = max(1, cfg.samples - cfg.warmup_samples)
    return 0.5 ** min(cfg.halvings, int((cfg.halvings + 1) * (samples - cfg.warmup_samples) / span))


def build_optimizer(groups: Dict[str, Tuple[Iterable[nn.Parameter], float]], cfg: SGDConfig) -> torch.optim.Optimizer:
    """SGD over named parameter groups ``{name: (params, lr)}``; in each, BatchNorm and bias parameters (1-D) get no
    weight decay (timm/torchvision reference practice). Frozen parameters are left out."""
    param_groups = []
    for name, (params, lr) in groups.items():
        params = [p for p in params if p.requires_grad]
        for decay in (True, False):
            chosen = [p for p in params if (p.dim() > 1) == decay]
            if chosen:
                wd = cfg.weight_decay if decay else 0.0
                param_groups.append(
                    dict(params=chosen, lr=lr, weight_decay=wd, name=name + ("" if decay else "_no_wd"))
                )
    if not param_groups:
        raise ValueError("no trainable parameters (check the mode / frozen stages)")
    return torch.optim.SGD(param_groups, lr=param_groups[0]["lr"], momentum=cfg.momentum)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int) -> LambdaLR:
    """Per-step schedule (call ``step()`` after every optimizer step)."""
    return LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))
