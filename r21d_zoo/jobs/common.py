"""Pieces every job's config shares: which model to start from, the clip-override field, JSON options."""

import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from .._errors import UsageError
from ..models import OFFLINE_HINT, ClipSpec, VideoResNet, WeightsError, create_model, set_derived_cfg

CLI_OFFLINE_HINT = (
    "If this machine is offline: pass --checkpoint FILE (a .safetensors, .pth or caffe2 .pkl), use --model "
    "local-dir:FOLDER, pre-populate the Hugging Face cache (HF_HOME) or the torch hub cache (TORCH_HOME) and set "
    "HF_HUB_OFFLINE=1, or pass --random-weights to run the pipeline without weights."
)


def in_cli_terms(message: str) -> str:
    """A weights error's offline hint, said with command-line options instead of Python arguments."""
    return message.replace(OFFLINE_HINT, CLI_OFFLINE_HINT)


def parse_json_object(text: str) -> Dict[str, Any]:
    """A JSON object from the command line (``--model-args '{"drop_rate": 0.2}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e}): {text!r}; expected an object such as '{{\"drop_rate\": 0.2}}'")
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object such as '{{\"drop_rate\": 0.2}}', got {text!r}")
    return value


RANDOM_INIT = "Randomly initialised (--random-weights): no weights loaded."
NO_LICENCE = dict(license=None, license_name=None, license_link=None)
DEFAULT_MODEL = "r2plus1d_34.ig65m_32f"  # the IG-65M pre-trained R(2+1)D-34 that ig65m-pytorch extracts with
CLASSIFIER_MODEL = "r2plus1d_34.ig65m_ft_kinetics400_32f"  # its Kinetics-400 classifier: what evaluate and predict run


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

    @property
    def random(self) -> bool:
        return not self.pretrained and self.checkpoint_path is None

    def create(self, seed: Optional[int] = None, **kwargs: Any) -> nn.Module:
        """``create_model`` with these settings; ``kwargs`` (e.g. ``num_classes``) take precedence over model_args.
        A random initialisation (``--random-weights``) is drawn from ``seed`` when given (the caller's RNG is left as
        it was), else from the caller's RNG, and its cfg is derived: no tag, source, results, label names or licence
        of the weights it did not load (``create_model`` itself keeps timm's convention: an unloaded model's cfg
        describes the weights it would load)."""
        if seed is not None and self.random:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.create(**kwargs)
        model = create_with_args(
            self.name, self.model_args, pretrained=self.pretrained, checkpoint_path=self.checkpoint_path, **kwargs
        )
        if self.random:  # a provenance of its own: none of the tag, source, results, classes or licence it names
            set_derived_cfg(model, base_model=None, origin_url=None, notes=RANDOM_INIT, **NO_LICENCE)
        return model


def create_or_fall_back(source: ModelSource, job: str) -> Tuple[nn.Module, bool]:
    """``source``'s model and whether it holds trained weights, for jobs that only show answers (demo, serve).
    Registry weights that cannot be downloaded fall back to random weights, said loudly; a file or folder the user
    named that cannot be used is an error (``--checkpoint``, ``local-dir:``). A random model keeps the label names of
    the weights it names (timm's convention), so its answers read as that label space."""
    if not source.random:
        try:
            return source.create(), True
        except WeightsError as e:
            if source.checkpoint_path is not None or source.name.startswith("local-dir:"):
                raise
            print(
                f"[{job}] pretrained weights for {source.name} are not cached and not reachable; "
                f"FALLING BACK TO RANDOM WEIGHTS (predictions are meaningless).\n[{job}] reason: {in_cli_terms(str(e))}"
            )
    return create_model(source.name, **source.model_args), False


def create_with_args(name: str, model_args: Dict[str, Any], **kwargs: Any) -> nn.Module:
    """``create_model(name, **model_args, **kwargs)`` (``kwargs`` win); a ``--model-args`` key the architecture does
    not take is a usage error naming it."""
    try:
        return create_model(name, **dict(model_args, **kwargs))
    except TypeError as e:
        found = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if not found or found.group(1) not in model_args:
            raise
        known = [p.name for p in inspect.signature(VideoResNet).parameters.values() if p.default is not p.empty]
        raise UsageError(
            f"--model-args: {name} takes no argument {found.group(1)!r}; remove it or check its spelling (the "
            f"arguments it takes: {', '.join(known)})"
        ) from e


def clip_field(help: str = "clip settings; each defaults to the weights' value", **defaults: Any) -> Any:
    """A job-config field holding ClipSpec overrides (a dict of ClipSpec fields, merged by ``ClipSpec.from_model``);
    the command line gets one option per ClipSpec field."""
    return field(default_factory=lambda: dict(defaults), metadata=dict(clip=True, entries=ClipSpec, help=help))
