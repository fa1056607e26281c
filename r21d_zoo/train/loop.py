"""The one training loop. :func:`fit` (epochs over a map-style dataset) and :func:`fit_stream` (clips processed over a
stream: sharded pre-training) run the same body, :func:`_train`, driven by a clock (:class:`_Epochs`,
:class:`_Clips`) that owns what differs: the loader, the schedule's clock, where the run is, and when it records and
checkpoints. The body does the rest once: precision and memory format (:mod:`r21d_zoo.deploy.placement`), gradient
accumulation and checkpointing, DDP/SyncBN, the optimizer step, exact resume from ``last.pt`` with the settings
checked, metrics, the best and final exports, and the folder lock (:class:`~r21d_zoo.train.run_folder.RunFolder`).

A job (fine-tuning, distillation, pre-training) brings only what differs: the model, the dataset, a ``step`` that
turns a batch into a loss, and optionally an evaluation hook and an export function.
"""

import itertools
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from .._progress import progress as show_progress
from ..data.seeds import epoch_seed
from ..deploy.placement import Placement
from .distributed import WorldInfo, all_reduce_sum, default_device, init_distributed
from ..infer.scores import unwrap
from .config import SampleOptimConfig, TrainConfig as TrainConfig
from .optim import build_optimizer, build_scheduler, sample_lr_factor
from .logs import RunLogs
from .run_folder import Export, RunFolder, run_settings

_logger = logging.getLogger(__name__)


@dataclass
class StepContext:
    """What a job's ``step`` gets besides the batch: where and how to run, and this step's augmentation generator."""

    place: Placement
    generator: torch.Generator

    @property
    def device(self) -> torch.device:
        return self.place.device

    def autocast(self) -> Any:
        return self.place.autocast()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A model input in the loop's memory format."""
        return self.place.prepare(x)


class StepOutput(NamedTuple):
    loss: torch.Tensor  # mean over the batch
    count: int  # examples in the batch
    sums: Dict[str, float] = {}  # per-example statistics summed over the batch; the interval's record has their means


@dataclass
class FitResult:
    model: nn.Module
    history: List[Dict[str, Any]]
    best_dir: Optional[Path]
    final_dir: Optional[Path]


Step = Callable[[nn.Module, Any, StepContext], StepOutput]
ParamGroups = Dict[str, Tuple[Iterable[nn.Parameter], float]]  # name -> (parameters, LR multiplier)


def wrap_ddp(model: nn.Module, world: WorldInfo, device: torch.device, sync_bn: bool = True) -> nn.Module:
    if world.world_size <= 1:
        return model
    if sync_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def fit(
    model: nn.Module,
    dataset: Dataset,
    step: Step,
    cfg: TrainConfig,
    param_groups: ParamGroups,
    *,
    out_dir: Union[str, Path, None] = None,
    world: Optional[WorldInfo] = None,
    drop_last: bool = False,
    frozen_bn: Sequence[nn.Module] = (),
    evaluate: Optional[Callable[[nn.Module], Dict[str, Any]]] = None,
    monitor: Optional[str] = None,
    export: Optional[Export] = None,
    final_name: Optional[str] = None,
    config: Any = None,
    data: Optional[Dict[str, str]] = None,
    stop_after_epochs: Optional[int] = None,
    progress: bool = True,
    desc: str = "epoch",
) -> FitResult:
    """Train ``model`` on ``dataset`` (which may have ``set_epoch`` and ``fingerprint``) for ``cfg.optim.epochs``.

    ``param_groups`` maps a name to (parameters, LR multiplier); the base LR is ``cfg.optim`` scaled with the global
    batch. After every epoch: ``evaluate(model)`` adds to the epoch record; with ``out_dir`` the primary rank writes
    ``last.pt``, the metrics and curves, and calls ``export(model, out_dir / "best", record)`` when the record's
    ``monitor`` value improves. When the last epoch is done the model is exported to ``out_dir/<final_name>``.
    ``last.pt`` records the run's settings (``config`` and the fingerprints of the training data and of ``data``, e.g.
    the validation set); resuming with other ones is refused, naming them. ``stop_after_epochs`` ends the run early
    (to test resuming)."""
    world = world or init_distributed()
    clock = _Epochs(dataset, cfg, world, drop_last, stop_after_epochs, progress, desc)
    hooks = _Hooks(frozen_bn, evaluate, monitor, export, final_name, config, data)
    return _train(model, step, cfg, param_groups, clock, out_dir, world, hooks)


def fit_stream(
    model: nn.Module,
    dataset: IterableDataset,
    step: Step,
    cfg: TrainConfig,
    param_groups: ParamGroups,
    *,
    checkpoint_every: int,
    out_dir: Union[str, Path, None] = None,
    world: Optional[WorldInfo] = None,
    export: Optional[Export] = None,
    final_name: Optional[str] = None,
    config: Any = None,
    data: Optional[Dict[str, str]] = None,
    stop_after_samples: Optional[int] = None,
    progress: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train on a stream until ``cfg.optim.samples`` clips are processed (a :class:`SampleOptimConfig`; clips of all
    ranks, counted after every optimizer step, which is the schedule's clock). Each rank starts its next epoch when
    its stream ends (a stream's last batch may be short), so every rank takes the same number of optimizer steps.

    The stream is an ``IterableDataset`` with ``set_epoch(epoch)``, ``set_position(marks, first)`` and
    ``order_key()`` (the settings that fix its order, checked on resume). It yields items whose last element is a 1-D
    integer tensor: the loader stream (the worker, numbered from ``first``, that read it) then the dataset's mark of
    the item; after ``set_position`` each stream leaves out the items up to its mark and worker ``w`` serves stream
    ``(w + first) % workers``, so the loader's round robin continues where it stopped. Every ``checkpoint_every``
    clips the loop records the interval's metrics and, with ``out_dir``, writes ``last.pt`` holding every rank's
    position: a resumed run equals an uninterrupted one bit for bit (same number of processes and workers).
    ``stop_after_samples`` ends the run early (to test resuming)."""
    if not isinstance(cfg.optim, SampleOptimConfig):
        raise TypeError(f"fit_stream needs a SampleOptimConfig (a schedule in clips), got {type(cfg.optim).__name__}")
    world = world or init_distributed()
    clock = _Clips(dataset, cfg, world, checkpoint_every, stop_after_samples, progress, desc)
    hooks = _Hooks(export=export, final_name=final_name, config=config, data=data)
    return _train(model, step, cfg, param_groups, clock, out_dir, world, hooks)


def _train(
    model: nn.Module,
    step: Step,
    cfg: TrainConfig,
    param_groups: ParamGroups,
    clock: "_Clock",
    out_dir: Union[str, Path, None],
    world: WorldInfo,
    hooks: "_Hooks",
) -> FitResult:
    """The loop body every training job runs (see the module docstring)."""
    data = dict(hooks.data or {})
    if hasattr(clock.dataset, "fingerprint"):
        data["train data"] = clock.dataset.fingerprint()
    settings = run_settings(hooks.config, data)
    export, monitor = hooks.export, hooks.monitor
    place, optimizer, scaler = _prepare(model, cfg, param_groups, world)
    scheduler = clock.start(optimizer, place.device)
    ddp = wrap_ddp(model, world, place.device, cfg.sync_bn)
    run = RunFolder(out_dir, world) if out_dir is not None else None
    history: List[Dict[str, Any]] = []
    best = best_dir = None
    with run if run is not None else nullcontext():
        state = run.resume(unwrap(ddp), optimizer, scheduler, scaler, settings) if run else None
        if state is not None:
            history, best = state["history"], state.get("best")
            clock.restore(state)
            _logger.info("resumed from %s at %s", run.checkpoint, clock.where())
        if run is not None and (run.path / "best").exists():
            best_dir = run.path / "best"
        logs = RunLogs(run.path, cfg.log_to, settings) if run is not None and cfg.log_to and world.is_primary else None
        if cfg.log_to and run is None:
            raise ValueError("log_to needs an output folder for the logs (out_dir)")
        while clock.more():
            ddp.train()
            for m in hooks.frozen_bn:
                m.eval()
            tally = _Tally()
            optimizer.zero_grad(set_to_none=True)
            for seed, batches in clock.steps():
                if seed is not None:
                    ctx = StepContext(place, torch.Generator().manual_seed(seed))
                count = 0
                for batch in batches:
                    result = step(ddp, batch, ctx)
                    scaler.scale(result.loss / cfg.accumulation).backward()
                    tally.add(result)
                    count += result.count
                clock.counted(count)  # before the scheduler steps: a schedule in clips reads the new count
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                clock.show(tally.postfix(result, scheduler))
            record = dict(clock.record(), **tally.record(scheduler))
            if hooks.evaluate is not None:
                record.update(hooks.evaluate(ddp))
            history.append(record)
            _logger.info(clock.describe(_summary(record), tally.seconds()))
            extra = clock.state()  # every rank: a stream gathers the positions of all
            if run is not None:
                score = record.get(monitor) if monitor and export else None
                if score is not None and (best is None or score > best):
                    best, best_dir = score, run.export("best", export, unwrap(ddp), record)
                extra.update(best=best, config=hooks.config, settings=settings)
                run.save(unwrap(ddp), optimizer, scheduler, scaler, history, **extra)
            if logs is not None:
                at = int(record.get("samples", record.get("epoch", len(history))))
                logs.record(record, at)
                logs.image("curves", run.path / "curves.png", at)
        clock.close()
        if logs is not None:
            logs.close()
        final_dir = None
        if run is not None and hooks.final_name and export is not None and clock.finished():
            final_dir = run.export(hooks.final_name, export, unwrap(ddp), history[-1] if history else {})
    return FitResult(unwrap(ddp), history, best_dir, final_dir)


@dataclass
class _Hooks:
    """What a job adds to the loop: BN layers kept in eval mode, the evaluation after each interval and the record
    value that picks the best model, the export of best/final models, and what ``last.pt`` records of the run."""

    frozen_bn: Sequence[nn.Module] = ()
    evaluate: Optional[Callable[[nn.Module], Dict[str, Any]]] = None
    monitor: Optional[str] = None
    export: Optional[Export] = None
    final_name: Optional[str] = None
    config: Any = None
    data: Optional[Dict[str, str]] = None


class _Clock:
    """What differs between training by epochs and by clips processed (see the module docstring)."""

    dataset: Any

    def start(self, optimizer: torch.optim.Optimizer, device: torch.device) -> LambdaLR:
        """Build the loader; return the LR schedule on this clock."""
        raise NotImplementedError

    def restore(self, state: Dict[str, Any]) -> None:
        """Continue from the position recorded in ``last.pt`` (refusing one this run cannot continue)."""

    def more(self) -> bool:
        """Whether another interval (an epoch, a checkpoint interval) is to run now."""
        raise NotImplementedError

    def finished(self) -> bool:
        """Whether the schedule is complete (then the final model is exported)."""
        raise NotImplementedError

    def steps(self) -> Iterator[Tuple[Optional[int], Iterator[Any]]]:
        """The optimizer steps of the next interval: (a new augmentation seed or None to keep the last generator,
        the step's micro-batches)."""
        raise NotImplementedError

    def counted(self, count: int) -> None:
        """This rank processed ``count`` clips in the step just taken."""

    def show(self, postfix: Dict[str, str]) -> None:
        """Progress after a step."""

    def record(self) -> Dict[str, Any]:
        """Where the run is, for the interval's record."""
        raise NotImplementedError

    def state(self) -> Dict[str, Any]:
        """What ``last.pt`` needs besides the states, to resume here (called on every rank)."""
        raise NotImplementedError

    def where(self) -> str:
        raise NotImplementedError

    def describe(self, summary: str, seconds: float) -> str:
        """The log line of the interval just done (its record's ``summary``; it took ``seconds``)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Epochs(_Clock):
    """Epochs over a map-style dataset, split by a :class:`DistributedSampler`; the last optimizer step of an epoch
    may take fewer than ``accumulation`` batches."""

    def __init__(
        self,
        dataset: Dataset,
        cfg: TrainConfig,
        world: WorldInfo,
        drop_last: bool,
        stop_after: Optional[int],
        progress: bool,
        desc: str,
    ):
        self.dataset, self.cfg, self.world, self.drop_last = dataset, cfg, world, drop_last
        self.progress, self.desc = progress, desc
        self.epochs = cfg.optim.epochs
        self.end = self.epochs if stop_after is None else min(self.epochs, stop_after)
        self.epoch, self.seconds, self.bar = 0, [], None

    def start(self, optimizer: torch.optim.Optimizer, device: torch.device) -> LambdaLR:
        cfg, world = self.cfg, self.world
        self.sampler = DistributedSampler(
            self.dataset, world.world_size, world.rank, shuffle=True, seed=cfg.seed, drop_last=self.drop_last
        )
        self.loader = DataLoader(
            self.dataset,
            cfg.batch_size,
            sampler=self.sampler,
            num_workers=cfg.workers,
            pin_memory=device.type == "cuda",
            drop_last=self.drop_last,
        )
        if len(self.loader) == 0:
            raise ValueError(f"{len(self.dataset)} examples are fewer than one batch of {cfg.batch_size} per process")
        return build_scheduler(optimizer, cfg.optim, math.ceil(len(self.loader) / cfg.accumulation))

    def restore(self, state: Dict[str, Any]) -> None:
        self.epoch = state["epoch"]

    def more(self) -> bool:
        return self.epoch < self.end

    def finished(self) -> bool:
        return self.epoch >= self.epochs

    def steps(self) -> Iterator[Tuple[Optional[int], Iterator[Any]]]:
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        self.bar = show_progress(
            self.loader,
            desc=f"{self.desc} {self.epoch + 1}/{self.epochs}",
            unit="batch",
            show=self.progress and self.world.is_primary,
        )
        batches, left = iter(self.bar), len(self.loader)
        seed: Optional[int] = epoch_seed(self.cfg.seed, self.epoch, 10**6 + self.world.rank)
        while left:
            n = min(self.cfg.accumulation, left)
            yield seed, itertools.islice(batches, n)
            seed, left = None, left - n
        self.epoch += 1

    def show(self, postfix: Dict[str, str]) -> None:
        self.bar.set_postfix(**postfix)

    def record(self) -> Dict[str, Any]:
        return dict(epoch=self.epoch)

    def state(self) -> Dict[str, Any]:
        return dict(epoch=self.epoch)

    def where(self) -> str:
        return f"epoch {self.epoch}"

    def describe(self, summary: str, seconds: float) -> str:
        self.seconds.append(seconds)
        eta = sum(self.seconds) / len(self.seconds) * (self.end - self.epoch)
        return f"{self.desc} {self.epoch}/{self.epochs}: {summary}, ETA {_duration(eta)}"


class StreamPosition(NamedTuple):
    """Where one rank is in its stream: the epoch, the last item consumed from each loader stream (``marks``:
    stream -> the dataset's mark) and the stream the next batch comes from. See :func:`fit_stream`."""

    epoch: int = 0
    marks: Dict[int, List[int]] = {}
    first: int = 0


class _Clips(_Clock):
    """Clips processed over a stream (all ranks); an interval ends every ``checkpoint_every`` clips."""

    def __init__(
        self,
        dataset: IterableDataset,
        cfg: TrainConfig,
        world: WorldInfo,
        checkpoint_every: int,
        stop_after: Optional[int],
        progress: bool,
        desc: str,
    ):
        self.dataset, self.cfg, self.world, self.every = dataset, cfg, world, checkpoint_every
        self.progress, self.desc = progress, desc
        self.optim: SampleOptimConfig = cfg.optim
        self.end = self.optim.samples if stop_after is None else min(self.optim.samples, stop_after)
        self.clips = self.step = 0
        self.position = StreamPosition()
        self.streams = max(1, cfg.workers)
        self.layout = dict(
            world_size=world.world_size,
            workers=self.streams,
            batch_size=cfg.batch_size,
            accumulation=cfg.accumulation,
            stream=dataset.order_key(),
        )
        self.batches: Optional[Iterator[Tuple[StreamPosition, Any]]] = None
        self.bar: Any = None

    def start(self, optimizer: torch.optim.Optimizer, device: torch.device) -> LambdaLR:
        cfg = self.cfg
        self.global_batch = cfg.batch_size * self.world.world_size * cfg.accumulation
        cuda = device.type == "cuda"
        self.loader = DataLoader(self.dataset, cfg.batch_size, num_workers=cfg.workers, pin_memory=cuda)
        return LambdaLR(optimizer, lambda _: sample_lr_factor(self.optim, self.clips, self.global_batch))

    def restore(self, state: Dict[str, Any]) -> None:
        saved = state.get("layout") or {}
        changed = sorted(k for k in set(self.layout) | set(saved) if self.layout.get(k) != saved.get(k))
        if changed:
            raise ValueError(
                f"last.pt was written by a run with other {', '.join(changed)} ("
                + "; ".join(f"{k}: {saved.get(k)} then, {self.layout.get(k)} now" for k in changed)
                + "); its stream positions only hold for the same number of processes, --workers, --batch-size, "
                "--accumulation and stream (shards, seed, sampling, key lists, shuffle buffer): resume with those, "
                "or choose a new output folder"
            )
        self.clips, self.step = state["samples"], state["step"]
        mine = state["positions"][self.world.rank]
        self.position = StreamPosition(mine["epoch"], {int(k): v for k, v in mine["marks"].items()}, mine["first"])

    def more(self) -> bool:
        return self.clips < self.end

    def finished(self) -> bool:
        return self.clips >= self.optim.samples

    def steps(self) -> Iterator[Tuple[Optional[int], Iterator[Any]]]:
        if self.batches is None:
            self.batches = _stream_batches(self.dataset, self.loader, self.position, self.streams)
            self.bar = show_progress(
                total=self.optim.samples, desc=self.desc, unit="clip", show=self.progress and self.world.is_primary
            )
            self.bar.update(self.clips)
        while True:
            before = self.clips
            yield epoch_seed(self.cfg.seed, self.step, 10**6 + self.world.rank), self._micro_batches()
            if self.clips // self.every != before // self.every or self.clips >= self.end:
                return

    def _micro_batches(self) -> Iterator[Any]:
        for _ in range(self.cfg.accumulation):
            self.position, batch = next(self.batches)
            yield batch

    def counted(self, count: int) -> None:
        count = all_reduce_sum(count)
        self.clips, self.step = self.clips + count, self.step + 1
        self.bar.update(count)

    def show(self, postfix: Dict[str, str]) -> None:
        self.bar.set_postfix(**postfix)

    def record(self) -> Dict[str, Any]:
        return dict(samples=self.clips, step=self.step, epoch=self.position.epoch)

    def state(self) -> Dict[str, Any]:
        positions = _gather(self.position._asdict(), self.world)
        return dict(samples=self.clips, step=self.step, positions=positions, layout=self.layout)

    def where(self) -> str:
        return f"{self.clips} clips"

    def describe(self, summary: str, seconds: float) -> str:
        return f"{self.desc} {self.clips}/{self.optim.samples} clips: {summary}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    model: nn.Module, cfg: TrainConfig, param_groups: ParamGroups, world: WorldInfo
) -> Tuple[Placement, torch.optim.Optimizer, torch.amp.GradScaler]:
    """Place the model (device, memory format, gradient checkpointing as configured) and build its optimizer with the
    linearly scaled LR per group, and the fp16 loss scaler (disabled otherwise)."""
    place = Placement.create(default_device(world, cfg.device), cfg.amp, cfg.channels_last)
    place.place(model)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    lr = cfg.optim.scaled_lr(cfg.batch_size, world.world_size, cfg.accumulation)
    optimizer = build_optimizer({k: (p, lr * mult) for k, (p, mult) in param_groups.items()}, cfg.optim)
    return place, optimizer, place.grad_scaler()


class _Tally:
    """Loss and per-example statistics over an interval of training (an epoch, or a checkpoint interval)."""

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
    """A record as one readable line: losses and accuracies, then the rate."""
    parts = [
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in record.items()
        if k not in ("epoch", "train_clips_per_s", "lr")
    ]
    return ", ".join(parts + [f"lr {record['lr']:.3g}", f"{record['train_clips_per_s']:.1f} clips/s"])


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"
