"""The inference layer's settings, importable without torch so the command line can describe them at once: which
model to start from (:class:`ModelSource`), how clips become features (:class:`ExtractConfig`) and how a video's
answer is made (:class:`PredictConfig`)."""

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Tuple, Union

from .._bounds import Checked, above, at_least, between
from .._errors import UsageError
from .._options import MODEL_ARGS_HELP, STRIDE_SEC_HELP
from ..models import ClipSpec  # light: the schema alone

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from ..data.features import VideoFeatures
    from ..video.reader import Clip, VideoInfo


CLI_OFFLINE_HINT = (
    "If this machine is offline: pass --checkpoint FILE (a .safetensors, .pth or caffe2 .pkl), use --model "
    "local-dir:FOLDER, pre-populate the Hugging Face cache (HF_HOME) or the torch hub cache (TORCH_HOME) and set "
    "HF_HUB_OFFLINE=1, or pass --random-weights to run the pipeline without weights."
)


def in_cli_terms(message: str) -> str:
    """A weights error's offline hint, said with command-line options instead of Python arguments."""
    from ..models import OFFLINE_HINT

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


RANDOM_SEED = 0  # the seed of --random-weights in commands without a --seed, so a replayed config.yaml answers alike


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
        metadata=dict(parse=parse_json_object, help=MODEL_ARGS_HELP),
    )

    @property
    def random(self) -> bool:
        return not self.pretrained and self.checkpoint_path is None

    def create(self, seed: Optional[int] = None, **kwargs: Any) -> "nn.Module":
        """``create_model`` with these settings; ``kwargs`` (e.g. ``num_classes``) take precedence over model_args.
        A random initialisation (``--random-weights``) is drawn from ``seed`` when given (the caller's RNG is left as
        it was), else from the caller's RNG, and its cfg is derived: no tag, source, results, label names or licence
        of the weights it did not load (``create_model`` itself keeps timm's convention: an unloaded model's cfg
        describes the weights it would load)."""
        import torch

        if seed is not None and self.random:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._create(seed, **kwargs)
        return self._create(None, **kwargs)

    def _create(self, seed: Optional[int], **kwargs: Any) -> "nn.Module":
        from ..models import set_derived_cfg

        model = create_with_args(
            self.name, self.model_args, pretrained=self.pretrained, checkpoint_path=self.checkpoint_path, **kwargs
        )
        if self.random:  # a provenance of its own: none of the tag, source, results, classes or licence it names
            notes = RANDOM_INIT + (f" Seed {seed}." if seed is not None else "")
            set_derived_cfg(model, base_model=None, origin_url=None, notes=notes, **NO_LICENCE)
        return model


def create_or_fall_back(source: ModelSource, job: str) -> Tuple["nn.Module", bool]:
    """``source``'s model and whether it holds trained weights, for jobs that only show answers (demo, serve).
    Registry weights that cannot be downloaded fall back to random weights, said loudly; a file or folder the user
    named that cannot be used is an error (``--checkpoint``, ``local-dir:``). A random model keeps the label names of
    the weights it names (timm's convention), so its answers read as that label space; it is drawn from
    :data:`RANDOM_SEED`."""
    import torch

    from ..models import WeightsError, create_model

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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return create_model(source.name, **source.model_args), False


def create_with_args(name: str, model_args: Dict[str, Any], **kwargs: Any) -> "nn.Module":
    """``create_model(name, **model_args, **kwargs)`` (``kwargs`` win); a ``--model-args`` key the architecture does
    not take is a usage error naming it and the ones it takes."""
    from ..models import create_model

    try:
        return create_model(name, **dict(model_args, **kwargs))
    except TypeError as e:
        found = re.search(r"unexpected keyword argument '(\w+)'(?: \((the arguments it takes: [^)]*)\))?", str(e))
        if not found or found.group(1) not in model_args:
            raise
        raise UsageError(
            f"--model-args: {name} takes no argument {found.group(1)!r}; remove it or check its spelling"
            + (f" ({found.group(2)})" if found.group(2) else "")
        ) from e


@dataclass(frozen=True)
class InferenceOptions:
    """How a model runs for inference, one value passed whole from a command to the runner: the device (None:
    where the model is), the precision (``amp``: auto, bf16, fp16, none, int8), the runtime (auto: the fastest,
    measured once, see :mod:`r21d_zoo.deploy.choice`; eager, torch, onnxruntime) and the memory format
    (``channels_last``; None: on a GPU)."""

    device: Union[str, "torch.device", None] = None
    amp: Optional[str] = "auto"
    runtime: str = "auto"
    channels_last: Optional[bool] = None

    @classmethod
    def from_legacy(
        cls, function: str, inference: Any, legacy: Dict[str, Any], base: Optional["InferenceOptions"] = None
    ) -> "InferenceOptions":
        """``inference``, or one made from the keywords of the 0.x signature (``device=``, ``amp=``, ``runtime=``,
        ``channels_last=``, and ``optimize=True`` for runtime torch), each with a deprecation warning; a device
        passed where ``inference`` now goes counts as ``device=``."""
        import warnings

        if inference is not None and not isinstance(inference, InferenceOptions):
            legacy = dict(legacy, device=inference)
            inference = None
        used = [k for k, v in legacy.items() if v is not None]
        if legacy.pop("optimize", None):
            legacy["runtime"] = "torch"
        given = {k: v for k, v in legacy.items() if v is not None}
        if used:
            warnings.warn(
                f"{function}({'=..., '.join(used)}=...) is deprecated and will be removed in the next release; use "
                f"inference=InferenceOptions({', '.join(f'{k}=...' for k in given)})",
                FutureWarning,
                stacklevel=3,
            )
        return dataclasses.replace(inference or base or cls(), **given)


def clip_field(help: str = "clip settings; each defaults to the weights' value", **defaults: Any) -> Any:
    """A job-config field holding ClipSpec overrides (a dict of ClipSpec fields, merged by ``ClipSpec.from_model``);
    the command line gets one option per ClipSpec field."""
    return field(default_factory=lambda: dict(defaults), metadata=dict(clip=True, entries=ClipSpec, help=help))


Pool = Literal["avg", "max", "none"]


POOLS = ("avg", "max", "none")


ENGINES = ("local", "ray")  # extraction in this process (with DataLoader decoding workers), or on a Ray cluster


@dataclass
class ExtractConfig(Checked):
    """How clips are sampled and turned into features. ``clip`` overrides the weights' :class:`ClipSpec`."""

    clip: Dict[str, Any] = clip_field()
    stride_sec: Optional[float] = field(
        default=None, metadata=dict(help=STRIDE_SEC_HELP, bound=above(0))
    )
    num_clips: Optional[int] = field(
        default=None,
        metadata=dict(help="N uniformly spaced clips per video instead of sliding windows", bound=at_least(1)),
    )
    feature_fps: Optional[float] = field(
        default=None,
        metadata=dict(help="features per second, whatever the clip's length: one window every 1/N s", bound=above(0)),
    )
    centered: bool = field(
        default=False,
        metadata=dict(help="windows centred on each output time (every --stride-sec or 1/--feature-fps s), not "
                      "starting there; the edges are padded"),
    )
    segments: Optional[int] = field(
        default=None,
        metadata=dict(help="N equal segments per video: the mean of the features of the windows centred in each "
                      "(UCF-Crime's 32)", bound=at_least(1)),
    )
    pad: Literal["repeat", "loop"] = field(default="repeat", metadata=dict(help="how the last clip is filled"))
    fast_resize: bool = field(default=False, metadata=dict(help="resize in the decoder (faster; not the reference)"))
    mirror: bool = field(
        default=False,
        metadata=dict(help="flip every frame left-right first: the mirror image's features (dedup --mirrored-target)"),
    )
    layer: Union[str, int] = field(
        default="pre_logits", metadata=dict(help="pre_logits, logits, or a stage: layer1-4 / 0-4")
    )
    spatial_pool: Pool = field(default="avg", metadata=dict(help="pooling over space"))
    temporal_pool: Pool = field(default="avg", metadata=dict(help="pooling over time"))
    batch_size: int = field(default=8, metadata=dict(help="clips per forward pass", bound=at_least(1)))

    def __post_init__(self) -> None:
        super().__post_init__()
        other = next((k for k in ("num_clips", "stride_sec") if getattr(self, k)), None)
        if self.feature_fps and other:
            raise UsageError(f"--feature-fps and --{other.replace('_', '-')} both say where windows go; give one")
        if self.num_clips and (self.centered or self.segments or self.stride_sec):
            what = "--centered" if self.centered else "--segments" if self.segments else "--stride-sec"
            raise UsageError(f"{what} places features along the video; --num-clips takes N clips instead, drop one")

    def clips_for(
        self, spec: ClipSpec, info: "VideoInfo", span: Optional[Tuple[float, float]] = None
    ) -> List["Clip"]:
        """The clips of a video, or of its part ``span`` (start, length in seconds), in the video's time. Each starts
        inside it; one that runs past its end is padded when read (:meth:`VideoReader.read_spec_clip`'s ``end``)."""
        from ..video import fixed_rate_clips, sliding_clips, uniform_clips

        offset, duration = span or (0.0, info.duration)
        length, period = spec.clip_seconds(info.fps), 1.0 / info.fps if info.fps > 0 else 0.0
        if self.num_clips:
            clips = uniform_clips(duration, length, self.num_clips)
        elif self.feature_fps or self.centered:
            step = 1.0 / self.feature_fps if self.feature_fps else self.stride_sec or length
            clips = fixed_rate_clips(duration, length, step, self.centered, period)
        else:
            clips = sliding_clips(duration, length, self.stride_sec, period)
        return [c._replace(start=c.start + offset, end=c.end + offset) for c in clips] if offset else clips

    def in_segments(self, result: "VideoFeatures") -> "VideoFeatures":
        """With ``segments`` N: the video (or its annotated segment) cut into N equal parts, each the mean of the
        features of the windows whose centre falls in it (a part with none takes the window nearest its centre), its
        times the part's bounds; else ``result`` as it is."""
        if not self.segments:
            return result
        import numpy as np

        from ..data.features import VideoFeatures

        lo, hi = result.info.get("segment") or (0.0, result.info["duration"])
        bounds = np.linspace(lo, hi, self.segments + 1)
        centres = result.clip_times.mean(1)
        part = np.clip(np.searchsorted(bounds, centres, side="right") - 1, 0, self.segments - 1)
        padded = result.num_padded if result.num_padded is not None else np.zeros(len(centres), dtype=np.int64)
        features, num_padded = [], []
        for k in range(self.segments):
            members = np.flatnonzero(part == k)
            if not len(members):
                members = np.array([np.abs(centres - (bounds[k] + bounds[k + 1]) / 2).argmin()])
            features.append(result.features[members].astype(np.float32).mean(0))
            num_padded.append(int(padded[members].sum()))
        times = np.stack([bounds[:-1], bounds[1:]], 1)
        return VideoFeatures(np.stack(features), times, np.array(num_padded, dtype=np.int64), result.info)


OUTPUTS = ("json", "csv", "srt", "vtt")


DEFAULT_CLIPS = 10  # video-level clips when the weights publish no protocol


@dataclass
class PredictConfig(Checked):
    """How a video is scored: the timeline's windows, smoothing and cut-off, and the video-level clips."""

    clip: Dict[str, Any] = clip_field()
    top_k: int = field(default=5, metadata=dict(help="classes kept per window and for the video", bound=at_least(1)))
    stride_sec: Optional[float] = field(
        default=None, metadata=dict(help=STRIDE_SEC_HELP, bound=above(0))
    )
    smooth: int = field(
        default=1,
        metadata=dict(help="centred moving average of the window scores over this many windows", bound=at_least(1)),
    )
    threshold: float = field(
        default=0.0, metadata=dict(help="a window keeps only classes scoring at least this", bound=between(0, 1))
    )
    num_clips: Optional[int] = field(
        default=None,
        metadata=dict(help="video-level clips (default: the weights' published protocol, else 10)", bound=at_least(1)),
    )
    batch_size: int = field(default=8, metadata=dict(help="clips per forward pass", bound=at_least(1)))
