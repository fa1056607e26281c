"""The one training loop and its plumbing: the papers' LR rule and schedules, AMP, gradient accumulation and
checkpointing, channels_last, DDP/SyncBN, checkpoints that resume a run exactly (model, optimizer, scheduler, scaler,
RNG states, epoch or stream position), the progress display and atomic metrics (json, csv, curves). :func:`fit` runs
by epochs over a map-style dataset; :func:`fit_stream` by clips processed over a stream (sharded pre-training), with
the same optimizer, step, tally and checkpoint pieces.

A job (fine-tuning, distillation, pre-training) brings only what differs: the model, the dataset, a ``step`` that
turns a batch into a loss, and optionally an evaluation hook and an export function.
"""

import contextlib
import csv
import io
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Literal, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from .._io import atomic_write
from .._progress import progress as show_progress
from .common import default_workers
from .distributed import WorldInfo, all_reduce_sum, default_device, init_distributed

_logger = logging.getLogger(__name__)
AmpMode = Literal["bf16", "fp16", "none"]


@dataclass
class SGDConfig:
    """SGD with momentum. ``lr`` is per ``reference_batch`` clips; the run uses ``lr * global_batch /
    reference_batch`` (linear scaling with batch and world size, as VMZ and Goyal et al.)."""

    lr: float = field(default=0.01, metadata=dict(help="learning rate per --reference-batch clips (scaled linearly)"))
    reference_batch: int = field(default=64, metadata=dict(help="global batch the learning rate is given for"))
    momentum: float = field(default=0.9, metadata=dict(help="SGD momentum"))
    weight_decay: float = field(default=1e-4, metadata=dict(help="L2 weight decay (not on BN and biases)"))

    def scaled_lr(self, batch_size: int, world_size: int = 1, accumulation: int = 1) -> float:
        return self.lr * batch_size * world_size * accumulation / self.reference_batch


@dataclass
class OptimConfig(SGDConfig):
    """The scaled LR warmed up linearly over ``warmup_epochs``, then decayed by ``gamma`` every ``step_epochs``
    (``schedule="step"``) or to zero (``"cosine"``)."""

    epochs: int = field(default=10, metadata=dict(help="training epochs"))
    warmup_epochs: float = field(default=0.0, metadata=dict(help="linear warmup length in epochs"))
    schedule: Literal["step", "cosine"] = field(default="step", metadata=dict(help="decay after the warmup"))
    step_epochs: int = field(default=10, metadata=dict(help="step schedule: decay every this many epochs"))
    gamma: float = field(default=0.1, metadata=dict(help="step schedule: decay factor"))


@dataclass
class SampleOptimConfig(SGDConfig):
    """The IG-65M schedule, measured in samples processed instead of epochs: the scaled LR warmed up linearly over
    ``warmup_samples``, then halved ``halvings`` times at equal intervals (the rest of the run in ``halvings + 1``
    equal parts). Defaults: the paper's 490M videos, 13 halvings, 0.192 for 128 GPUs x 16 8-frame clips."""

    lr: float = field(default=0.192, metadata=dict(help="learning rate per --reference-batch clips (scaled linearly)"))
    reference_batch: int = field(default=2048, metadata=dict(help="global batch the learning rate is given for"))
    samples: int = field(default=490_000_000, metadata=dict(help="training length in clips processed (all ranks)"))
    warmup_samples: int = field(default=10_000_000, metadata=dict(help="linear warmup length in clips"))
    halvings: int = field(default=13, metadata=dict(help="times the LR is halved, at equal intervals"))


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


def autocast(device: torch.device, amp: Optional[str]) -> Any:
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


RESUME_FREE = ("workers", "device")  # how a run is executed, not what it computes: free to change on resume


def run_settings(config: Any, data: Dict[str, str]) -> Dict[str, Any]:
    """What a resumed run must share with the run that wrote ``last.pt``: every field of ``config`` (dotted names)
    but :data:`RESUME_FREE`, and the fingerprints of its data."""
    flat: Dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value

    walk("", json.loads(json.dumps(config, default=_plain)) if config is not None else {})
    return {k: v for k, v in {**flat, **data}.items() if k and k not in RESUME_FREE}


def check_same_run(path: Path, saved: Optional[Dict[str, Any]], now: Dict[str, Any]) -> None:
    """Refuse to continue the run in ``path`` with other settings (it would mix two runs and report neither). A
    ``last.pt`` that recorded none (``saved`` None, an older version) resumes."""
    saved = saved or {}
    changed = sorted(k for k in set(saved) & set(now) if saved[k] != now[k])
    if changed:
        raise ValueError(
            f"{path} is a run with other settings ("
            + "; ".join(f"{k}: {saved[k]!r} then, {now[k]!r} now" for k in changed)
            + "): rerun with the settings it was started with to resume it, or choose another -o for a new run"
        )


def epoch_seed(seed: int, epoch: int, index: int) -> int:
    """A per-(epoch, example) seed: random clip choices do not depend on worker or rank assignment, so a resumed or
    re-sharded run draws the same clips."""
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2**63 - 1)


# ---------------------------------------------------------------------------------------------------------------------
# The training loop


@dataclass
class TrainConfig:
    """What every training job shares: batching, precision and memory options, distribution, seed and optimisation."""

    batch_size: int = field(default=8, metadata=dict(help="clips per process per step"))
    accumulation: int = field(default=1, metadata=dict(help="gradient accumulation steps per optimizer step"))
    workers: int = field(default_factory=default_workers, metadata=dict(help="data-loading processes"))
    device: Optional[str] = field(default=None, metadata=dict(help="default: this rank's GPU, else the CPU"))
    amp: Optional[AmpMode] = field(default="bf16", metadata=dict(help="autocast dtype on GPU (ignored on CPU)"))
    channels_last: Optional[bool] = field(default=None, metadata=dict(help="channels_last_3d (default: on GPU)"))
    grad_checkpointing: bool = field(default=False, metadata=dict(help="recompute activations: less memory"))
    sync_bn: bool = field(default=True, metadata=dict(help="SyncBatchNorm under DDP on GPU"))
    seed: int = field(default=0, metadata=dict(help="seed of initialisation, clip choice and augmentation"))
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class StepContext:
    """What a job's ``step`` gets besides the batch: where to run, how, and this epoch's augmentation generator."""

    device: torch.device
    amp: Optional[str]
    channels_last: bool
    generator: torch.Generator

    def autocast(self) -> Any:
        return autocast(self.device, self.amp)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A model input in the loop's memory format."""
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x


class StepOutput(NamedTuple):
    loss: torch.Tensor  # mean over the batch
    count: int  # examples in the batch
    sums: Dict[str, float] = {}  # per-example statistics summed over the batch; the epoch record has their means


@dataclass
class FitResult:
    model: nn.Module
    history: List[Dict[str, Any]]
    best_dir: Optional[Path]
    final_dir: Optional[Path]


Step = Callable[[nn.Module, Any, StepContext], StepOutput]


def fit(
    model: nn.Module,
    dataset: Dataset,
    step: Step,
    cfg: TrainConfig,
    param_groups: Dict[str, Tuple[Iterable[nn.Parameter], float]],
    *,
    out_dir: Union[str, Path, None] = None,
    world: Optional[WorldInfo] = None,
    drop_last: bool = False,
    frozen_bn: Sequence[nn.Module] = (),
    evaluate: Optional[Callable[[nn.Module], Dict[str, Any]]] = None,
    monitor: Optional[str] = None,
    export: Optional[Callable[[nn.Module, Path, Dict[str, Any]], None]] = None,
    final_name: Optional[str] = None,
    config: Any = None,
    data: Optional[Dict[str, str]] = None,
    stop_after_epochs: Optional[int] = None,
    progress: bool = True,
    desc: str = "epoch",
) -> FitResult:
    """Train ``model`` on ``dataset`` (which may have ``set_epoch``) with ``step``.

    ``param_groups`` maps a name to (parameters, LR multiplier); the base LR is ``cfg.optim`` scaled with the global
    batch. After every epoch: ``evaluate(model)`` adds to the epoch record; with ``out_dir`` the primary rank writes
    ``last.pt`` (everything needed to resume exactly, plus ``config``), ``metrics.json``/``.csv`` and ``curves.png``,
    and calls ``export(model, out_dir / "best", record)`` when the record's ``monitor`` value improves. When the last
    epoch is done the model is exported to ``out_dir/<final_name>`` with the last record. ``stop_after_epochs`` ends
    the run early (to test resuming). ``last.pt`` records the run's settings (``config`` and the fingerprints of the
    training data and of ``data``, e.g. the validation set); resuming with other ones is refused, naming them.
    """
    world = world or init_distributed()
    data = dict(data or {})
    if hasattr(dataset, "fingerprint"):
        data["train data"] = dataset.fingerprint()
    settings = run_settings(config, data)
    device, channels_last, optimizer, scaler = _prepare(model, cfg, param_groups, world)
    sampler = DistributedSampler(
        dataset, world.world_size, world.rank, shuffle=True, seed=cfg.seed, drop_last=drop_last
    )
    loader = DataLoader(
        dataset,
        cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
    )
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} examples are fewer than one batch of {cfg.batch_size} per process")
    steps_per_epoch = math.ceil(len(loader) / cfg.accumulation)
    scheduler = build_scheduler(optimizer, cfg.optim, steps_per_epoch)
    ddp = wrap_ddp(model, world, device, cfg.sync_bn)
    out = Path(out_dir) if out_dir is not None else None
    history: List[Dict[str, Any]] = []
    start_epoch, best = 0, None
    state = resume_training_state(out / "last.pt", unwrap(ddp), optimizer, scheduler, scaler) if out else None
    if state is not None:
        check_same_run(out / "last.pt", state.get("settings"), settings)
        start_epoch, history, best = state["epoch"], state["history"], state.get("best")
        _logger.info("resumed from %s at epoch %d", out / "last.pt", start_epoch)
    best_dir = out / "best" if out is not None and (out / "best").exists() else None
    epochs = cfg.optim.epochs
    end_epoch = epochs if stop_after_epochs is None else min(epochs, stop_after_epochs)
    epoch_seconds: List[float] = []
    for epoch in range(start_epoch, end_epoch):
        sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        ctx = StepContext(
            device,
            cfg.amp,
            channels_last,
            torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, 10**6 + world.rank)),
        )
        ddp.train()
        for m in frozen_bn:
            m.eval()
        tally = _Tally()
        bar = show_progress(
            loader, desc=f"{desc} {epoch + 1}/{epochs}", unit="batch", show=progress and world.is_primary
        )
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            result = step(ddp, batch, ctx)
            scaler.scale(result.loss / cfg.accumulation).backward()
            if (i + 1) % cfg.accumulation == 0 or i + 1 == len(loader):
                _optimizer_step(optimizer, scheduler, scaler)
            tally.add(result)
            bar.set_postfix(**tally.postfix(result, scheduler))
        record: Dict[str, Any] = dict(epoch=epoch + 1, **tally.record(scheduler))
        if evaluate is not None:
            record.update(evaluate(ddp))
        history.append(record)
        epoch_seconds.append(tally.seconds())
        eta = sum(epoch_seconds) / len(epoch_seconds) * (end_epoch - epoch - 1)
        _logger.info("%s %d/%d: %s, ETA %s", desc, epoch + 1, epochs, _summary(record), _duration(eta))
        if out is not None and world.is_primary:
            score = record.get(monitor) if monitor and export else None
            if score is not None and (best is None or score > best):
                best, best_dir = score, out / "best"
                export(unwrap(ddp), best_dir, record)
            save_training_state(
                out / "last.pt",
                unwrap(ddp),
                optimizer,
                scheduler,
                scaler,
                epoch=epoch + 1,
                history=history,
                best=best,
                config=config,
                settings=settings,
            )
            write_metrics(out, history)
    final_dir = _export_final(unwrap(ddp), out, final_name, export, history, world) if end_epoch == epochs else None
    return FitResult(unwrap(ddp), history, best_dir, final_dir)


class StreamPosition(NamedTuple):
    """Where one rank is in its stream: the epoch, the last item consumed from each loader stream (``marks``:
    stream -> the dataset's mark) and the stream the next batch comes from. See :func:`fit_stream`."""

    epoch: int = 0
    marks: Dict[int, List[int]] = {}
    first: int = 0


def fit_stream(
    model: nn.Module,
    dataset: IterableDataset,
    step: Step,
    cfg: TrainConfig,
    param_groups: Dict[str, Tuple[Iterable[nn.Parameter], float]],
    *,
    checkpoint_every: int,
    out_dir: Union[str, Path, None] = None,
    world: Optional[WorldInfo] = None,
    export: Optional[Callable[[nn.Module, Path, Dict[str, Any]], None]] = None,
    final_name: Optional[str] = None,
    config: Any = None,
    stop_after_samples: Optional[int] = None,
    progress: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train on a stream until ``cfg.optim.samples`` clips are processed (a :class:`SampleOptimConfig`; clips of all
    ranks, counted after every optimizer step, which is the schedule's clock). Each rank starts its next epoch when
    its stream ends (a stream's last batch may be short), so every rank takes the same number of optimizer steps.

    The stream is an ``IterableDataset`` with ``set_epoch(epoch)``, ``set_position(marks, first)`` and
    ``order_key()`` (the settings that fix its order, checked on resume). It yields
    items whose last element is a 1-D integer tensor: the loader stream (the worker, numbered from ``first``, that
    read it) then the dataset's mark of the item; after ``set_position`` each stream leaves out the items up to its
    mark and worker ``w`` serves stream ``(w + first) % workers``, so the loader's round robin continues where it
    stopped. Every ``checkpoint_every`` clips the loop records the interval's metrics and, with ``out_dir``, writes
    ``last.pt`` holding every rank's position: a resumed run equals an uninterrupted one bit for bit (same number
    of processes and workers). At the end the model is exported to ``out_dir/<final_name>``.
    ``stop_after_samples`` ends the run early (to test resuming)."""
    world = world or init_distributed()
    device, channels_last, optimizer, scaler = _prepare(model, cfg, param_groups, world)
    optim: SampleOptimConfig = cfg.optim
    global_batch = cfg.batch_size * world.world_size * cfg.accumulation
    clips = [0]  # clips processed by all ranks so far: the schedule's clock
    scheduler = LambdaLR(optimizer, lambda _: sample_lr_factor(optim, clips[0], global_batch))
    end = optim.samples if stop_after_samples is None else min(optim.samples, stop_after_samples)
    streams = max(1, cfg.workers)
    layout = dict(
        world_size=world.world_size,
        workers=streams,
        batch_size=cfg.batch_size,
        accumulation=cfg.accumulation,
        stream=dataset.order_key(),
    )
    ddp = wrap_ddp(model, world, device, cfg.sync_bn)
    out = Path(out_dir) if out_dir is not None else None
    history: List[Dict[str, Any]] = []
    steps, position = 0, StreamPosition()
    state = resume_training_state(out / "last.pt", unwrap(ddp), optimizer, scheduler, scaler) if out else None
    if state is not None:
        saved_layout = state.get("layout") or {}
        changed = sorted(k for k in set(layout) | set(saved_layout) if layout.get(k) != saved_layout.get(k))
        if changed:
            raise ValueError(
                f"{out / 'last.pt'} was written by a run with other {', '.join(changed)} ("
                + "; ".join(f"{k}: {saved_layout.get(k)} then, {layout.get(k)} now" for k in changed)
                + "); its stream positions only hold for the same number of processes, --workers, --batch-size, "
                "--accumulation and stream (shards, seed, sampling, key lists, shuffle buffer): resume with those, "
                "or choose a new output folder"
            )
        clips[0], steps, history = state["samples"], state["step"], state["history"]
        saved = state["positions"][world.rank]
        position = StreamPosition(saved["epoch"], {int(k): v for k, v in saved["marks"].items()}, saved["first"])
        _logger.info("resumed from %s after %d clips", out / "last.pt", clips[0])
    loader = DataLoader(dataset, cfg.batch_size, num_workers=cfg.workers, pin_memory=device.type == "cuda")
    batches = _stream_batches(dataset, loader, position, streams)
    ddp.train()
    tally = _Tally()
    bar = show_progress(total=optim.samples, desc=desc, unit="clip", show=progress and world.is_primary)
    bar.update(clips[0])
    optimizer.zero_grad(set_to_none=True)
    while clips[0] < end:
        ctx = StepContext(
            device,
            cfg.amp,
            channels_last,
            torch.Generator().manual_seed(epoch_seed(cfg.seed, steps, 10**6 + world.rank)),
        )
        count = 0
        for _ in range(cfg.accumulation):
            position, batch = next(batches)
            result = step(ddp, batch, ctx)
            scaler.scale(result.loss / cfg.accumulation).backward()
            tally.add(result)
            count += result.count
        count = all_reduce_sum(count)
        before, clips[0], steps = clips[0], clips[0] + count, steps + 1
        _optimizer_step(optimizer, scheduler, scaler)
        bar.update(count)
        bar.set_postfix(**tally.postfix(result, scheduler))
        if clips[0] // checkpoint_every == before // checkpoint_every and clips[0] < end:
            continue
        record = dict(samples=clips[0], step=steps, epoch=position.epoch, **tally.record(scheduler))
        history.append(record)
        tally = _Tally()
        _logger.info("%s %d/%d clips: %s", desc, clips[0], optim.samples, _summary(record))
        positions = _gather(position._asdict(), world)
        if out is not None and world.is_primary:
            save_training_state(
                out / "last.pt",
                unwrap(ddp),
                optimizer,
                scheduler,
                scaler,
                samples=clips[0],
                step=steps,
                positions=positions,
                layout=layout,
                history=history,
                config=config,
            )
            write_metrics(out, history)
    bar.close()
    done = clips[0] >= optim.samples
    final_dir = _export_final(unwrap(ddp), out, final_name, export, history, world) if done else None
    return FitResult(unwrap(ddp), history, None, final_dir)


def _export_final(
    model: nn.Module,
    out: Optional[Path],
    name: Optional[str],
    export: Optional[Callable[[nn.Module, Path, Dict[str, Any]], None]],
    history: List[Dict[str, Any]],
    world: WorldInfo,
) -> Optional[Path]:
    """The finished run's model, exported by the primary rank to ``out/name`` with the last record."""
    if out is None or not name or export is None:
        return None
    if world.is_primary:
        export(model, out / name, history[-1] if history else {})
    return out / name


def _stream_batches(
    dataset: IterableDataset, loader: DataLoader, position: StreamPosition, streams: int
) -> Iterator[Tuple[StreamPosition, Any]]:
    """Batches from ``position`` on, through epoch after epoch, each with the position after it."""
    epoch, marks, first = position
    marks = dict(marks)
    while True:
        dataset.set_epoch(epoch)
        dataset.set_position(marks, first)
        empty = True
        for batch in loader:
            stream, *mark = batch[-1][-1].tolist()
            marks[stream], first, empty = mark, (stream + 1) % streams, False
            yield StreamPosition(epoch, dict(marks), first), batch
        if empty and not marks:
            raise ValueError(
                f"epoch {epoch} of this rank's stream is empty: fewer shards than processes x workers, or all of its "
                "shards damaged (see the warnings)?"
            )
        epoch, marks, first = epoch + 1, {}, 0


def _gather(obj: Any, world: WorldInfo) -> List[Any]:
    """``obj`` of every rank, in rank order (on every rank)."""
    if world.world_size <= 1 or not dist.is_initialized():
        return [obj]
    gathered: List[Any] = [None] * world.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def _prepare(
    model: nn.Module, cfg: TrainConfig, param_groups: Dict[str, Tuple[Iterable[nn.Parameter], float]], world: WorldInfo
) -> Tuple[torch.device, bool, torch.optim.Optimizer, torch.amp.GradScaler]:
    """Move the model (channels_last, gradient checkpointing as configured) and build its optimizer with the
    linearly scaled LR per group, and the fp16 loss scaler (disabled otherwise)."""
    device = default_device(world, cfg.device)
    cuda = device.type == "cuda"
    channels_last = cuda if cfg.channels_last is None else cfg.channels_last
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    lr = cfg.optim.scaled_lr(cfg.batch_size, world.world_size, cfg.accumulation)
    optimizer = build_optimizer({k: (p, lr * mult) for k, (p, mult) in param_groups.items()}, cfg.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp == "fp16")
    return device, channels_last, optimizer, scaler


def _optimizer_step(optimizer: torch.optim.Optimizer, scheduler: LambdaLR, scaler: torch.amp.GradScaler) -> None:
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


class _Tally:
    """Loss and per-example statistics over a stretch of training (an epoch, or a checkpoint interval)."""

    def __init__(self) -> None:
        self.t0, self.seen, self.loss_sum, self.sums = time.perf_counter(), 0, 0.0, {}

    def add(self, result: StepOutput) -> None:
        self.seen += result.count
        self.loss_sum += float(result.loss.detach()) * result.count
        for k, v in result.sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def seconds(self) -> float:
        return max(time.perf_counter() - self.t0, 1e-9)

    def postfix(self, result: StepOutput, scheduler: LambdaLR) -> Dict[str, str]:
        return dict(
            loss=f"{float(result.loss.detach()):.3f}",
            lr=f"{scheduler.get_last_lr()[0]:.3g}",
            clips_per_s=f"{self.seen / self.seconds():.1f}",
        )

    def record(self, scheduler: LambdaLR) -> Dict[str, Any]:
        record = dict(
            train_loss=self.loss_sum / max(1, self.seen),
            train_clips=self.seen,
            lr=scheduler.get_last_lr()[0],
            train_clips_per_s=self.seen / self.seconds(),
        )
        record.update({k: v / max(1, self.seen) for k, v in self.sums.items()})
        return record


def _summary(record: Dict[str, Any]) -> str:
    """An epoch record as one readable line: losses and accuracies, then the rate."""
    parts = [
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in record.items()
        if k not in ("epoch", "train_clips_per_s", "lr")
    ]
    return ", ".join(parts + [f"lr {record['lr']:.3g}", f"{record['train_clips_per_s']:.1f} clips/s"])


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


CURVE_KEYS = ("train_clip_top1", "val_clip_top1", "val_video_top1", "val_mAP")


def write_metrics(out: Path, history: List[Dict[str, Any]]) -> None:
    """``metrics.json``, ``metrics.csv`` and ``curves.png`` (loss and accuracy per epoch), each written atomically."""

    def atomic(name: str, data: bytes) -> None:
        atomic_write(out / name, lambda f: f.write(data))

    x_key = "samples" if history and "samples" in history[0] else "epoch"  # a stream's records are by clips
    atomic("metrics.json", json.dumps(history, indent=2).encode())
    keys = sorted({k for h in history for k in h}, key=lambda k: (k != x_key, k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic("metrics.csv", buf.getvalue().encode())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h[x_key] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    a.set_xlabel(x_key)
    a.legend()
    for key in CURVE_KEYS:
        if any(key in h for h in history):
            b.plot(epochs, [h.get(key) for h in history], marker="o", label=key)
    b.set_xlabel(x_key)
    b.set_ylim(0, 1)
    if b.get_legend_handles_labels()[0]:
        b.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic("curves.png", buf.getvalue())
