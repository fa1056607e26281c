"""Pieces every job's config shares: which model to start from, and the clip-override field."""

import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional

import torch.nn as nn

from ..models import create_model
from ..models._hub import OFFLINE_HINT

_logger = logging.getLogger("r21d_zoo.progress")
CLI_OFFLINE_HINT = (
    "If this machine is offline: pass --checkpoint FILE (a .safetensors, .pth or caffe2 .pkl), use --model "
    "local-dir:FOLDER, pre-populate the Hugging Face cache (HF_HOME) or the torch hub cache (TORCH_HOME) and set "
    "HF_HUB_OFFLINE=1, or pass --random-weights to run the pipeline without weights."
)


def in_cli_terms(message: str) -> str:
    """A weights error's offline hint, said with command-line options instead of Python arguments."""
    return message.replace(OFFLINE_HINT, CLI_OFFLINE_HINT)


# Exit codes of every command (the README's table): success is 0.
EXIT_PARTIAL = 1  # some items of a batch failed; they are recorded and the rest was done
EXIT_USAGE = 2  # a bad option or value, an unknown model name (argparse uses 2 too)
EXIT_INPUT = 3  # a file, folder, label, checkpoint, config or download that cannot be used


class InputError(ValueError):
    """A user's input (a file, a folder, a label, an option) cannot be used; the message names it and the fix."""


def writable_dir(path: str, option: str = "-o") -> Path:
    """Create ``path`` if needed and prove it writable, before any work is done."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {path} is an existing file, not a folder; choose another {option}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise InputError(
            f"cannot write to {option} {path} ({e.strerror or e}); choose a folder you can write to"
        ) from e
    return out


def writable_file(path: str, option: str) -> Path:
    """The parent folder of an output file must be writable and the file must not be a folder."""
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name")
    writable_dir(str(out.parent), f"the folder of {option}")
    return out


class _LogProgress:
    """tqdm's interface for a job whose stderr is not a terminal (a log file, SLURM, nohup): an INFO line every
    ``every`` seconds with the count, rate and ETA, instead of a bar that nobody sees."""

    def __init__(self, iterable: Optional[Iterable], total: Optional[int], desc: str, unit: str, every: float):
        self.iterable, self.total, self.desc, self.unit, self.every = iterable, total, desc, unit, every
        self.n, self.postfix = 0, ""
        self.start = self.last = time.perf_counter()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.n == self.total:
            self.last = now
            rate = self.n / max(now - self.start, 1e-9)
            left = f", ETA {(self.total - self.n) / rate:.0f} s" if self.total else ""
            of = f"/{self.total}" if self.total else ""
            units = self.unit + ("es" if self.unit.endswith("ch") else "s")
            postfix = f" ({self.postfix})" if self.postfix else ""
            _logger.info(f"{self.desc}: {self.n}{of} {units}, {rate:.2f} {self.unit}/s{left}{postfix}")

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass


def progress(
    iterable: Optional[Iterable] = None,
    total: Optional[int] = None,
    desc: str = "",
    unit: str = "it",
    show: bool = True,
) -> Any:
    """A progress display: a tqdm bar on a terminal, periodic log lines elsewhere (every ``R21D_ZOO_LOG_EVERY``
    seconds, default 30), nothing when ``show`` is False (e.g. on ranks other than 0)."""
    from tqdm.auto import tqdm

    if show and not sys.stderr.isatty():
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        return _LogProgress(iterable, total, desc, unit, float(os.environ.get("R21D_ZOO_LOG_EVERY", "30")))
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=not show)


def default_workers() -> int:
    """Data-loading processes: up to 4, no more than the machine's cores."""
    return min(4, os.cpu_count() or 1)


def parse_json_object(text: str) -> Dict[str, Any]:
    """A JSON object from the command line (``--model-args '{"drop_rate": 0.2}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e}): {text!r}; expected an object such as '{{\"drop_rate\": 0.2}}'")
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object such as '{{\"drop_rate\": 0.2}}', got {text!r}")
    return value


DEFAULT_MODEL = "r2plus1d_34.ig65m_32f"  # the IG-65M pre-trained R(2+1)D-34 that ig65m-pytorch extracts with


@dataclass
class ModelSource:
    """A model to start from: a registry name, alias, ``hf-hub:org/repo`` or ``local-dir:PATH``, and its weights."""

    name: str = field(
        default=DEFAULT_MODEL,
        metadata=dict(flag="--model", help="arch.tag, alias, hf-hub:org/repo or local-dir:PATH"),
    )
    pretrained: bool = field(
        default=True, metadata=dict(flag="--random-weights", negate=True, help="random initialisation, no weights")
    )
    checkpoint_path: Optional[str] = field(
        default=None, metadata=dict(flag="--checkpoint", help="weights from this local file")
    )
    model_args: Dict[str, Any] = field(
        default_factory=dict,
        metadata=dict(parse=parse_json_object, help="JSON object of extra create_model arguments, e.g. drop_rate"),
    )

    def create(self, **kwargs: Any) -> nn.Module:
        """``create_model`` with these settings; ``kwargs`` (e.g. ``num_classes``) take precedence over model_args."""
        return create_model(
            self.name,
            pretrained=self.pretrained,
            checkpoint_path=self.checkpoint_path,
            **dict(self.model_args, **kwargs),
        )


def clip_field(help: str = "clip settings; each defaults to the weights' value", **defaults: Any) -> Any:
    """A job-config field holding ClipSpec overrides (a dict of ClipSpec fields, merged by ``ClipSpec.from_model``);
    the command line gets one option per ClipSpec field."""
    return field(default_factory=lambda: dict(defaults), metadata=dict(clip=True, help=help))
