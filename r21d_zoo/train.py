"""Training plumbing shared by the training tools: the papers' LR rule and schedules, AMP, DDP wrapping, and
checkpoints that resume a run exactly (model, optimizer, scheduler, scaler, RNG states, epoch)."""

import contextlib
import math
import random
import json
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR

from ._io import atomic_write
from .distributed import WorldInfo


@dataclass
class OptimConfig:
    """SGD with momentum. ``lr`` is per ``reference_batch`` clips; the run uses ``lr * global_batch /
    reference_batch`` (linear scaling with batch and world size, as VMZ), warmed up linearly over ``warmup_epochs``
    and then decayed by ``gamma`` every ``step_epochs`` (``schedule="step"``) or to zero (``"cosine"``)."""

    lr: float = 0.01
    reference_batch: int = 64
    momentum: float = 0.9
    weight_decay: float = 1e-4
    epochs: int = 10
    warmup_epochs: float = 0.0
    schedule: str = "step"
    step_epochs: int = 10
    gamma: float = 0.1

    def scaled_lr(self, batch_size: int, world_size: int = 1, accumulation: int = 1) -> float:
        return self.lr * batch_size * world_size * accumulation / self.reference_batch


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


def build_optimizer(groups: Dict[str, Tuple[Iterable[nn.Parameter], float]], cfg: OptimConfig) -> torch.optim.Optimizer:
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


def autocast(device: torch.device, amp: Optional[str]):
    """bf16/fp16 autocast on GPU; nothing on CPU (``amp`` is ignored there)."""
    if device.type != "cuda" or amp in (None, "none"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])


def wrap_ddp(model: nn.Module, world: WorldInfo, device: torch.device, sync_bn: bool = True) -> nn.Module:
    if world.world_size <= 1:
        return model
    if sync_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def rng_state() -> Dict[str, Any]:
    """RNG states as tensors and plain types, so checkpoints load with ``weights_only=True``."""
    np_state = np.random.get_state()
    state = dict(
        torch=torch.get_rng_state(),
        numpy=dict(
            key=torch.from_numpy(np_state[1].astype(np.int64)),
            pos=int(np_state[2]),
            has_gauss=int(np_state[3]),
            cached=float(np_state[4]),
        ),
        python=list(random.getstate()[1]),
        python_version=random.getstate()[0],
    )
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    """Atomic ``torch.save``: a killed run never leaves a truncated checkpoint."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> Dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_training_state(path: Path, model: nn.Module, optimizer, scheduler, scaler, **extra: Any) -> None:
    """Everything a run needs to continue identically: weights, optimizer/scheduler/scaler and RNG states, plus
    ``extra`` (epoch, history, config ...; converted to plain JSON types so ``weights_only`` loading accepts them)."""
    state = dict(
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        scaler=scaler.state_dict(),
        rng=rng_state(),
    )
    state.update(json.loads(json.dumps(extra, default=_plain)))
    save_checkpoint(path, state)


def resume_training_state(path: Path, model: nn.Module, optimizer, scheduler, scaler) -> Optional[Dict[str, Any]]:
    """Restore what :func:`save_training_state` wrote (returns its extras), or ``None`` when ``path`` is absent."""
    if not Path(path).exists():
        return None
    state = load_checkpoint(path)
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    scaler.load_state_dict(state.pop("scaler"))
    set_rng_state(state.pop("rng"))
    return state


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else str(obj)


def epoch_seed(seed: int, epoch: int, index: int) -> int:
    """A per-(epoch, example) seed: random clip choices do not depend on worker or rank assignment, so a resumed or
    re-sharded run draws the same clips."""
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2**63 - 1)
