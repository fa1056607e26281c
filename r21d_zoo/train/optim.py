"""Optimisers and schedules: SGD with the papers' linear LR scaling, the epoch schedule (warmup, then step or cosine
decay) and the IG-65M schedule in clips processed (warmup, then halvings); one config class each, with no field
declared twice."""

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, Literal, Tuple

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR

from .._bounds import Bound, Checked, above, at_least, between


@dataclass
class SGDConfig(Checked):
    """SGD with momentum. ``lr`` is per ``reference_batch`` clips; the run uses ``lr * global_batch /
    reference_batch`` (linear scaling with batch and world size, as VMZ and Goyal et al.)."""

    lr: float = field(
        default=0.01, metadata=dict(help="learning rate per --reference-batch clips (scaled linearly)", bound=above(0))
    )
    reference_batch: int = field(
        default=64, metadata=dict(help="global batch the learning rate is given for", bound=at_least(1))
    )
    momentum: float = field(default=0.9, metadata=dict(help="SGD momentum", bound=between(0, 1, high_open=True)))
    weight_decay: float = field(
        default=1e-4, metadata=dict(help="L2 weight decay (not on BN and biases)", bound=at_least(0))
    )

    def scaled_lr(self, batch_size: int, world_size: int = 1, accumulation: int = 1) -> float:
        return self.lr * batch_size * world_size * accumulation / self.reference_batch


@dataclass
class OptimConfig(SGDConfig):
    """The scaled LR warmed up linearly over ``warmup_epochs``, then decayed by ``gamma`` every ``step_epochs``
    (``schedule="step"``) or to zero (``"cosine"``)."""

    epochs: int = field(default=10, metadata=dict(help="training epochs", bound=at_least(1)))
    warmup_epochs: float = field(default=0.0, metadata=dict(help="linear warmup length in epochs", bound=at_least(0)))
    schedule: Literal["step", "cosine"] = field(default="step", metadata=dict(help="decay after the warmup"))
    step_epochs: int = field(
        default=10, metadata=dict(help="step schedule: decay every this many epochs", bound=at_least(1))
    )
    gamma: float = field(
        default=0.1, metadata=dict(help="step schedule: decay factor", bound=Bound(0, 1, low_open=True))
    )


@dataclass
class SampleOptimConfig(SGDConfig):
    """The IG-65M schedule, measured in samples processed instead of epochs: the scaled LR warmed up linearly over
    ``warmup_samples``, then halved ``halvings`` times at equal intervals (the rest of the run in ``halvings + 1``
    equal parts). The length, warmup and halvings default to the paper's; :func:`ig65m_schedule` adds its LR."""

    samples: int = field(
        default=490_000_000, metadata=dict(help="training length in clips processed (all ranks)", bound=at_least(1))
    )
    warmup_samples: int = field(
        default=10_000_000, metadata=dict(help="linear warmup length in clips", bound=at_least(0))
    )
    halvings: int = field(
        default=13, metadata=dict(help="times the LR is halved, at equal intervals", bound=at_least(0))
    )


def ig65m_schedule() -> SampleOptimConfig:
    """The paper's pre-training schedule: 0.192 for 128 GPUs x 16 clips, over 490M clips with 13 halvings."""
    return SampleOptimConfig(lr=0.192, reference_batch=2048)


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
