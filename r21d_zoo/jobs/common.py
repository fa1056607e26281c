"""Pieces every job's config shares: which model to start from, and the clip-override field."""

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch.nn as nn

from ..models import create_model
from ..models._hub import OFFLINE_HINT

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
