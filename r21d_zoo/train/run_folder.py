"""A training run's output folder: ``last.pt`` (everything a run needs to continue exactly: model, optimizer,
scheduler, loss scaler and RNG states, its position, history and settings), ``metrics.json``/``.csv`` and
``curves.png``, the exported models, and the lock that refuses a second live run on the same folder (a lock left by a
killed process is taken over). Every file is written atomically."""

import csv
import io
import json
import logging
import random
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from .._io import FolderLock, atomic_write
from .._world import WorldInfo
from ..models import WeightsError, load_weights_only

_logger = logging.getLogger(__name__)
CHECKPOINT = "last.pt"
Export = Callable[[nn.Module, Path, Dict[str, Any]], None]  # (model, folder, the epoch's record)


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
    """A run's ``last.pt``, read weights-only; one that cannot be read names itself and the ways out."""
    fix = f"delete it to start the run over, or train into another -o folder (it is {Path(path).parent})"
    state = load_weights_only(str(path), fix=fix)
    if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "rng"} <= set(state):
        raise WeightsError(f"{path} is not a training checkpoint written by r21d-zoo; {fix}")
    return state


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


def resume_training_state(
    path: Path, model: nn.Module, optimizer, scheduler, scaler, settings: Optional[Dict[str, Any]] = None
) -> Optional[Dict[str, Any]]:
    """Restore what :func:`save_training_state` wrote (returns its extras), or ``None`` when ``path`` is absent; with
    ``settings``, a run recorded with others is refused before anything is restored."""
    if not Path(path).exists():
        return None
    state = load_checkpoint(path)
    if settings is not None:
        check_same_run(path, state.get("settings"), settings)
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    scaler.load_state_dict(state.pop("scaler"))
    set_rng_state(state.pop("rng"))
    return state


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else str(obj)


RESUME_FREE = ("workers", "device", "log_to")  # how a run is executed or watched, not what it computes


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


class RunFolder:
    """The folder of one run, seen by one process: only the primary rank locks it and writes to it."""

    def __init__(self, path: Union[str, Path], world: WorldInfo):
        self.path, self.world = Path(path), world
        self._lock = FolderLock(self.path)

    def __enter__(self) -> "RunFolder":
        if self.world.is_primary:
            self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def resume(
        self, model: nn.Module, optimizer, scheduler, scaler, settings: Dict[str, Any]
    ) -> Optional[Dict[str, Any]]:
        """The extras of ``last.pt`` after restoring every state from it, None for a new run; a run recorded with
        other ``settings`` is refused."""
        return resume_training_state(self.checkpoint, model, optimizer, scheduler, scaler, settings)

    def save(self, model: nn.Module, optimizer, scheduler, scaler, history: List[Dict[str, Any]], **extra: Any) -> None:
        if self.world.is_primary:
            save_training_state(self.checkpoint, model, optimizer, scheduler, scaler, history=history, **extra)
            write_metrics(self.path, history)

    def export(self, name: str, export: Export, model: nn.Module, record: Dict[str, Any]) -> Path:
        """``export(model, folder/name, record)`` on the primary rank; the folder's path on every rank."""
        if self.world.is_primary:
            export(model, self.path / name, record)
        return self.path / name
