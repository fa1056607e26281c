"""Feature extraction: clips sampled over whole videos, decoded in DataLoader workers, batched through the model.

:func:`extract_features` handles one video in-process. :func:`run_extraction` (``r21d-zoo extract``) handles many:
workers decode and resize to uint8, the model runs batched on the device (crop + normalise there), each video's
features are written atomically to ``OUT/<name>.npy`` (+ ``<name>.times.npy``), ``OUT/<name>.safetensors`` or a
dataset of ``OUT/features.h5`` (see :mod:`r21d_zoo.data.features`), and
``OUT/manifest.jsonl`` gets one line per processed video, naming the settings it was made with (``OUT/extraction.json``:
model, weights digest, layer, pooling, clip settings, dtype, format). Finished videos are skipped on re-runs with the
same settings; a folder made with other settings is refused before any work. Failures are recorded and the run carries
on. Shards (``torchrun`` ranks or ``shard_id``/``num_shards``) take ``videos[i::n]`` of
the sorted list: no padding, no duplicates.
"""

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .._bounds import Checked, above, at_least
from .._errors import EXIT_PARTIAL, InputError, UsageError
from .._io import FolderLock, atomic_write, writable_dir
from .._progress import progress as show_progress
from .._version import __version__
from ..data.features import FEATURE_FORMATS, MANIFEST_FILE, SETTINGS_FILE, FeatureStore, VideoFeatures
from ..data.features import feature_format, flat_settings
from ..data.inputs import VideoItem, default_workers, discover_videos, read_video_list, resolved
from ..data.labelled import LabelOptions, segment_span, video_items
from ..data.shards import VIDEO_MEMBERS as SHARD_VIDEO_EXTS, ShardSet, shard_inputs, shard_samples
from ..deploy.onnx_runtime import INT8_RECIPE, tensor_sha256
from ..deploy.optimize import RUNTIME_HELP, RUNTIMES, optimize_for_inference, resolve_runtime
from ..deploy.runtime import CHANNELS_LAST_HELP, INFERENCE_AMP_HELP, INT8, InferenceAmp, Runtime
from ..models import ClipSpec, state_dict_sha256
from ..train.distributed import all_reduce_sum, default_device, init_distributed, world_info_from_env
from ..video import (
    Clip,
    VideoClassificationTransform,
    VideoDecodeError,
    VideoInfo,
    fixed_rate_clips,
    open_video,
    sliding_clips,
    uniform_clips,
)
from ..video.reader import (
    DECODERS,
    DEFAULT_DECODER,
    FRAMES_DECODER,
    VIDEO_EXTENSIONS,
    check_decoder,
    reader_class,
    renamed,
)
from .common import ModelSource, clip_field

_logger = logging.getLogger(__name__)

Pool = Literal["avg", "max", "none"]
POOLS = ("avg", "max", "none")


@dataclass
class ExtractConfig(Checked):
    """How clips are sampled and turned into features. ``clip`` overrides the weights' :class:`ClipSpec`."""

    clip: Dict[str, Any] = clip_field()
    stride_sec: Optional[float] = field(
        default=None, metadata=dict(help="seconds between clip starts (default: back to back)", bound=above(0))
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
        if self.num_clips and (self.centered or self.segments):
            what = "--centered" if self.centered else "--segments"
            raise UsageError(f"{what} places features along the video; --num-clips takes N clips instead, drop one")

    def clips_for(self, spec: ClipSpec, info: VideoInfo, span: Optional[Tuple[float, float]] = None) -> List[Clip]:
        """The clips of a video, or of its part ``span`` (start, length in seconds), in the video's time."""
        offset, duration = span or (0.0, info.duration)
        length = spec.clip_seconds(info.fps)
        if self.num_clips:
            clips = uniform_clips(duration, length, self.num_clips)
        elif self.feature_fps or self.centered:
            step = 1.0 / self.feature_fps if self.feature_fps else self.stride_sec or length
            clips = fixed_rate_clips(duration, length, step, self.centered)
        else:
            clips = sliding_clips(duration, length, self.stride_sec)
        return [c._replace(start=c.start + offset, end=c.end + offset) for c in clips] if offset else clips

    def in_segments(self, result: VideoFeatures) -> VideoFeatures:
        """With ``segments`` N: the video (or its annotated segment) cut into N equal parts, each the mean of the
        features of the windows whose centre falls in it (a part with none takes the window nearest its centre), its
        times the part's bounds; else ``result`` as it is."""
        if not self.segments:
            return result
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


# ---------------------------------------------------------------------------------------------------------------------
# Features of a batch of clips


def _stage_index(model: nn.Module, layer: Union[str, int]) -> int:
    names = [f["module"] for f in model.feature_info]
    if isinstance(layer, int) or str(layer).isdigit():
        index = int(layer)
        if not 0 <= index < len(names):
            raise ValueError(f"layer index {layer} is out of range; the model has stages 0-{len(names) - 1}: {names}")
        return index
    if layer not in names:
        raise ValueError(f"unknown layer {layer!r}; choose 'pre_logits', 'logits', an index or one of {names}")
    return names.index(layer)


def _pool(x: torch.Tensor, spatial: str, temporal: str) -> torch.Tensor:
    """Pool a (B, C, T, H, W) map over space and/or time; ``"none"`` keeps that axis."""
    for dims, how in (((3, 4), spatial), ((2,), temporal)):
        if how == "avg":
            x = x.mean(dim=dims, keepdim=True)
        elif how == "max":
            x = x.amax(dim=dims, keepdim=True)
        elif how != "none":
            raise ValueError(f"pooling must be one of {POOLS}, got {how!r}")
    for d, how in ((4, spatial), (3, spatial), (2, temporal)):
        if how != "none":
            x = x.squeeze(d)
    return x


def clip_features(
    model: nn.Module,
    x: torch.Tensor,
    layer: Union[str, int] = "pre_logits",
    spatial_pool: str = "avg",
    temporal_pool: str = "avg",
) -> torch.Tensor:
    """Features of normalised clips (B, C, T, H, W): the pooled penultimate layer by default, the logits, or a stage's
    feature map pooled over space and/or time (``"none"`` keeps that axis)."""
    if layer == "logits":
        return model(x)
    if layer == "pre_logits":
        fmap = model.forward_features(x)
    else:
        fmap = model.forward_intermediates(x, [_stage_index(model, layer)], stop_early=True, intermediates_only=True)[0]
    return _pool(fmap, spatial_pool, temporal_pool)


class FeatureRunner:
    """Moves uint8 clips to the device, crops and normalises there, and runs the model: with ``runtime="eager"`` as
    it is, with the precision and memory format of :mod:`r21d_zoo.deploy.runtime` (``amp="auto"``: bf16 on GPU,
    float32 on CPU); with another runtime (:data:`~r21d_zoo.deploy.optimize.RUNTIMES`) through
    :func:`optimize_for_inference`, which then applies them (``amp="int8"`` needs ``calibration`` clips)."""

    def __init__(
        self,
        model: nn.Module,
        spec: ClipSpec,
        cfg: ExtractConfig,
        device: Union[str, torch.device, None] = None,
        amp: Optional[str] = "auto",
        channels_last: Optional[bool] = None,
        runtime: str = "eager",
        calibration: Optional[torch.Tensor] = None,
    ):
        self.device = torch.device(device) if device else next(model.parameters()).device
        model = model.eval().to(self.device)
        if resolve_runtime(runtime, self.device, amp) == "eager":
            place = Runtime.create(self.device, amp, channels_last)
        else:
            model = optimize_for_inference(
                model, channels_last=channels_last, amp=amp, runtime=runtime, calibration=calibration
            )
            place = Runtime(self.device)  # precision and layout are inside the optimised model
        self.runtime = place
        self.model = place.place(model)
        self.cfg = cfg
        self.transform = VideoClassificationTransform.from_spec(spec).to(self.device)
        self.crops = 3 if spec.crop_mode == "three" else 1

    @torch.inference_mode()
    def clips(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, H, W, C) -> the model's normalised input clips (B * crops, C, T, H, W) on the device."""
        frames = frames.to(self.device, non_blocking=True)
        if self.cfg.mirror:
            frames = frames.flip(-2)  # (B, T, H, W, C): the frames of the mirrored video, before resizing and cropping
        return self.runtime.prepare(self.transform(frames))

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, C) -> float32 features (B, ...) on the CPU."""
        x, cfg = self.clips(frames), self.cfg
        with self.runtime.autocast():
            f = clip_features(self.model, x, cfg.layer, cfg.spatial_pool, cfg.temporal_pool)
        f = f.float()
        if self.crops > 1:
            f = f.reshape(-1, self.crops, *f.shape[1:]).mean(1)
        return f.cpu()

    @torch.inference_mode()
    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """The logits of ``frames``' clips (B * crops, classes) on the CPU, from the feature graph where it can."""
        x = self.clips(frames)
        with self.runtime.autocast():
            if self.cfg.layer == "pre_logits":
                return self.model.forward_head(self.model.forward_features(x)).float().cpu()
            return self.model(x).float().cpu()


# ---------------------------------------------------------------------------------------------------------------------
# Decoding in workers


class ClipChunks(IterableDataset):
    """Yields, per video, chunks of at most ``batch_size`` resized uint8 clips, named by the video's output name; the
    last chunk has ``last=True`` and the video's info. A video that fails yields one ``error`` item instead (earlier
    chunks of it must be discarded). Videos are split across DataLoader workers round-robin; containers are opened
    inside the worker. With a GPU ``device`` (a decoder that decodes there) frames are decoded onto it, in the main
    process."""

    def __init__(
        self,
        videos: Sequence[VideoItem],
        spec: ClipSpec,
        cfg: ExtractConfig,
        decoder: str = DEFAULT_DECODER,
        device: Optional[torch.device] = None,
        frames_fps: Optional[float] = None,
    ):
        self.videos, self.spec, self.cfg, self.decoder, self.device = list(videos), spec, cfg, decoder, device
        self.frames_fps = frames_fps  # frame folders' rate, where an item does not carry its own

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        wid, nw = _worker()
        for v in self.videos[wid::nw]:
            yield from self.chunks(v.path, v)

    def chunks(self, source: Union[str, bytes], item: VideoItem) -> Iterator[Dict[str, Any]]:
        """The chunks of one video read from ``source`` (a path, or the encoded bytes of a shard member)."""
        cfg, start = self.cfg, time.perf_counter()
        head = dict(name=item.name, video=item.path)
        try:
            fps = item.frames_fps or self.frames_fps
            with open_video(source, self.spec, self.decoder, cfg.fast_resize, self.device, frames_fps=fps) as reader:
                span = segment_span(item, reader.info.duration) if item.segment else None
                clips = cfg.clips_for(self.spec, reader.info, span)
                batch: List[Tuple[Any, Any]] = []
                for n, (clip, frames) in enumerate(reader.iter_clips(clips, self.spec, cfg.pad)):
                    batch.append((clip, frames))
                    if len(batch) == cfg.batch_size and n < len(clips) - 1:
                        yield self._chunk(head, batch, None)
                        batch = []
                info = asdict(reader.info)
                info["decode_seconds"] = time.perf_counter() - start
                if span is not None:
                    info["segment"] = [span[0], span[0] + span[1]]
                if item.annotation:
                    info["annotation"] = item.annotation
                yield self._chunk(head, batch, info)
        except Exception as e:  # one bad video must not stop a batch job; the error is recorded in the manifest
            message = str(e) if isinstance(e, VideoDecodeError) else f"{item.path}: {type(e).__name__}: {e}"
            yield dict(head, error=message)

    @staticmethod
    def _chunk(head: Dict[str, str], batch: List[Tuple[Any, Any]], info: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        return dict(
            head,
            frames=torch.stack([f.frames for _, f in batch]),
            times=torch.tensor([[c.start, c.end] for c, _ in batch], dtype=torch.float64),
            num_padded=torch.tensor([f.num_padded for _, f in batch]),
            last=info is not None,
            info=info,
        )


class ShardClipChunks(ClipChunks):
    """:class:`ClipChunks` of the videos in WebDataset shards, named by sample key: this job's shards
    (``urls[shard_id::num_shards]``) are dealt to the workers, and each video is decoded from memory. A key whose
    outputs exist already (``done(key)``) yields one ``skipped`` item instead."""

    def __init__(
        self,
        urls: Sequence[str],
        spec: ClipSpec,
        cfg: ExtractConfig,
        done: Callable[[str], bool],
        decoder: str = DEFAULT_DECODER,
        device: Optional[torch.device] = None,
    ):
        super().__init__([], spec, cfg, decoder, device)
        self.urls, self.done = list(urls), done

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        wid, nw = _worker()
        failures: List[Tuple[str, str]] = []

        def damaged() -> Iterator[Dict[str, Any]]:  # each damaged shard as one error item, named by its URL
            while failures:
                url, message = failures.pop(0)
                yield dict(name=url, video=url, error=message)

        for sample in shard_samples(self.urls[wid::nw], require=None, failures=failures):
            yield from damaged()
            key = sample["__key__"]
            item = VideoItem(f"{sample['__url__']}#{key}", key)
            ext = next((e for e in SHARD_VIDEO_EXTS if e in sample), None)
            if self.done(key):
                yield dict(name=key, video=item.path, skipped=True)
            elif ext is None:
                yield dict(name=key, video=item.path, error=f"{item.path}: no video member ({SHARD_VIDEO_EXTS})")
            else:
                yield from self.chunks(sample[ext], item)
        yield from damaged()


def _worker() -> Tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info else (0, 1)


def decode_device(decoder: str, device: torch.device) -> Optional[torch.device]:
    """The GPU to decode on: the model's, when the decoder can decode there (torchcodec's NVDEC); else None (CPU)."""
    return device if device.type != "cpu" and device.type in reader_class(decoder).devices else None


def extract_features(
    model: nn.Module,
    video: Union[str, os.PathLike],
    cfg: Optional[ExtractConfig] = None,
    device: Union[str, torch.device, None] = None,
    amp: Optional[str] = "auto",
    runtime: str = "eager",
    decoder: str = DEFAULT_DECODER,
    frames_fps: Optional[float] = None,
    **overrides: Any,
) -> VideoFeatures:
    """Features of every clip of one video. Keyword overrides replace fields of ``cfg`` (``num_clips=10``,
    ``layer="layer3"``, ``spatial_pool="none"``) or of the weights' clip (``num_frames=8``, ``crop_mode="three"``).
    ``runtime`` (``torch``, ``onnxruntime``, ``auto``) runs the model through :func:`r21d_zoo.optimize_for_inference`
    (float32; int8 is for :func:`run_extraction`, which calibrates); ``frames_fps`` is the rate of a frame folder
    (``video`` may be one, see :mod:`r21d_zoo.video.frames`). The deprecated names ``backend``, ``decoder_resize``,
    ``clip_stride`` and ``optimize=True`` work (with a warning) for ``decoder``, ``fast_resize``, ``stride_sec`` and
    ``runtime="torch"``."""
    decoder = renamed("extract_features", "backend", overrides.pop("backend", None), "decoder", decoder)
    optimize = "torch" if overrides.pop("optimize", None) else None
    runtime = renamed("extract_features", "optimize", optimize, "runtime", runtime)
    for old, new in (("decoder_resize", "fast_resize"), ("clip_stride", "stride_sec")):
        if old in overrides:
            overrides[new] = renamed("extract_features", old, overrides.pop(old), new, None)
    clip_overrides = {k: overrides.pop(k) for k in ClipSpec.fields() if k in overrides}
    cfg = replace(cfg or ExtractConfig(), **overrides)
    spec = ClipSpec.from_model(model, **cfg.clip, **clip_overrides)
    runner = FeatureRunner(model, spec, cfg, device, amp, runtime=runtime)
    feats, times, padded = [], [], []
    chunks = ClipChunks([], spec, cfg, decoder, decode_device(decoder, runner.device), frames_fps)
    for chunk in chunks.chunks(str(video), VideoItem(str(video), Path(video).stem)):
        if "error" in chunk:
            raise VideoDecodeError(chunk["error"])
        if len(chunk["frames"]):
            feats.append(runner(chunk["frames"]))
            times.append(chunk["times"])
            padded.append(chunk["num_padded"])
    result = VideoFeatures(torch.cat(feats).numpy(), torch.cat(times).numpy(), torch.cat(padded).numpy(), chunk["info"])
    return cfg.in_segments(result)


# ---------------------------------------------------------------------------------------------------------------------
# int8: calibrated on the user's videos, checked against float32

CALIBRATION_CLIPS_PER_VIDEO = 4
INT8_MIN_COSINE = 0.99  # mean per-clip cosine of int8 features with float32's
INT8_MIN_TOP1 = 0.95  # share of clips whose int8 logits have float32's top-1 class


def calibration_frames(
    videos: Union[Sequence[VideoItem], ShardSet],
    spec: ClipSpec,
    cfg: ExtractConfig,
    count: int,
    decoder: str = DEFAULT_DECODER,
    frames_fps: Optional[float] = None,
) -> Tuple[torch.Tensor, List[str]]:
    """uint8 frames of up to ``2 * count`` clips (the even ones calibrate int8, the odd ones check it): 4 uniformly
    spaced clips per video from the first videos of the whole input, the same on every shard and on resume (of
    WebDataset input, from its first shard), and the names of those videos. Videos that fail are passed over."""
    per_video = CALIBRATION_CLIPS_PER_VIDEO
    sampling = replace(cfg, num_clips=per_video, stride_sec=None, batch_size=per_video)  # one chunk per video
    if isinstance(videos, ShardSet):
        chunks: ClipChunks = ShardClipChunks(videos.urls[:1], spec, sampling, _never, decoder)
    else:
        chunks = ClipChunks(list(videos), spec, sampling, decoder, frames_fps=frames_fps)
    frames: List[torch.Tensor] = []
    names: List[str] = []
    for chunk in chunks:
        if "error" not in chunk and len(chunk["frames"]):
            frames.append(chunk["frames"])
            names.append(chunk["name"])
        if sum(map(len, frames)) >= 2 * count:
            break
    if sum(map(len, frames)) < 2:
        raise InputError("int8 needs clips to calibrate on, and none of the input videos could be decoded")
    return torch.cat(frames)[: 2 * count], names


@torch.inference_mode()
def int8_agreement(
    model: nn.Module, reference: "FeatureRunner", quantized: "FeatureRunner", frames: torch.Tensor
) -> Dict[str, Any]:
    """How the int8 runner's features and logits of ``frames``' clips agree with the float32 ``reference``'s: per-clip
    cosine (mean and min) and the top-1 agreement of the logits (None for a model without a classifier)."""
    batches = frames.split(reference.cfg.batch_size)
    a, b = (torch.cat([r(f) for f in batches]).flatten(1) for r in (reference, quantized))
    cosine = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)
    top1 = None
    if getattr(model, "num_classes", 0):
        la, lb = (torch.cat([r.logits(f) for f in batches]).argmax(1) for r in (reference, quantized))
        top1 = round(float((la == lb).double().mean()), 4)
    return dict(clips=len(frames), mean_cosine=round(float(cosine.mean()), 5), min_cosine=round(float(cosine.min()), 5),
                top1_agreement=top1)


def check_int8_agreement(agreement: Dict[str, Any], force: bool) -> None:
    """Refuse int8 features that agree too little with float32's (unless ``force``)."""
    cosine, top1 = agreement["mean_cosine"], agreement["top1_agreement"]
    low = cosine < INT8_MIN_COSINE or (top1 is not None and top1 < INT8_MIN_TOP1)
    shown = f"mean clip cosine {cosine:.4f} (at least {INT8_MIN_COSINE} needed)"
    if top1 is not None:
        shown += f", top-1 agreement {top1:.1%} (at least {INT8_MIN_TOP1:.0%} needed)"
    print(f"int8 vs float32 on {agreement['clips']} held-out clips: {shown}")
    if low and not force:
        raise InputError(
            f"int8 features agree too little with float32 on these videos: {shown}; extract in float32 (--amp none) "
            "or bf16 on a CPU that has it, or calibrate on more clips (--calibration-clips)"
        )


def _stage_check(model: nn.Module, layer: Union[str, int]) -> None:
    """Fail before any decoding when the layer does not exist."""
    if layer not in ("pre_logits", "logits"):
        _stage_index(model, layer)


# ---------------------------------------------------------------------------------------------------------------------
# The manifest


def _append_line(path: Path, record: Dict[str, Any]) -> None:
    """One ``write`` on an ``O_APPEND`` descriptor per record, so ranks sharing a manifest do not interleave."""
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------------------
# The batch job


def extraction_settings(
    model: nn.Module,
    spec: ClipSpec,
    cfg: ExtractConfig,
    format: str,
    dtype: str,
    model_name: Optional[str],
    init_seed: Optional[int] = None,
    frames_fps: Optional[float] = None,
    quantization: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Everything that decides what a features file holds (plus what is recorded but not compared: the package
    version); ``init_seed``: the seed a randomly initialised model was drawn from; ``frames_fps``: the rate frame
    folders were read at, when given; ``quantization``: int8's recipe and calibration clips."""
    pcfg = getattr(model, "pretrained_cfg", None) or {}
    settings = dict(
        model=model_name,
        weights=dict(
            architecture=pcfg.get("architecture"),
            tag=pcfg.get("tag"),
            base_model=pcfg.get("base_model"),
            init_seed=init_seed,
            sha256=state_dict_sha256(model),
        ),
        clip=spec.to_dict(),
        clips=dict(
            num_clips=cfg.num_clips,
            stride_sec=cfg.stride_sec,
            pad=cfg.pad,
            fast_resize=cfg.fast_resize,
            **{k: getattr(cfg, k) for k in ("feature_fps", "centered", "segments") if getattr(cfg, k)},  # absent before
        ),
        layer=str(cfg.layer),
        spatial_pool=cfg.spatial_pool,
        temporal_pool=cfg.temporal_pool,
        **(dict(mirror=True) if cfg.mirror else {}),  # absent otherwise, as in folders of earlier versions
        **(dict(frames_fps=frames_fps) if frames_fps else {}),
        **(dict(quantization=quantization) if quantization else {}),
        format=format,
        dtype=dtype,
        r21d_zoo_version=__version__,
    )
    return json.loads(json.dumps(settings))  # tuples as lists, as they read back


RENAMED_SETTINGS = {"clips.clip_stride": "clips.stride_sec", "clips.decoder_resize": "clips.fast_resize"}  # 0.x names


def check_settings(out: Path, settings: Dict[str, Any], resume: bool) -> str:
    """Record ``settings`` in ``out/extraction.json``; with ``resume``, refuse a folder made with other settings (or
    with unknown ones) before any work. Returns a short id of the settings for the manifest."""
    path = out / SETTINGS_FILE
    new = flat_settings(settings)
    ways_out = "extract into another folder (-o), or pass --overwrite to replace them"
    recorded = json.loads(path.read_text()) if path.exists() else None
    if resume and recorded is not None:
        old = {RENAMED_SETTINGS.get(k, k): v for k, v in flat_settings(recorded).items()}
        diff = [
            f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
        ]
        if diff:
            raise InputError(f"{out} holds features made with other settings ({'; '.join(diff)}); {ways_out}")
    elif resume and ((out / MANIFEST_FILE).exists() or len(FeatureStore(out))):
        raise InputError(f"{out} holds features with no {SETTINGS_FILE}, so their settings are unknown; {ways_out}")
    if recorded != settings:
        text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()), shared=True)  # every rank or job records them
    return hashlib.sha256(json.dumps(new, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class ExtractSummary:
    done: int = 0
    skipped: int = 0  # finished in an earlier run
    failed: int = 0
    clips: int = 0
    seconds: float = 0.0
    failures: List[str] = field(default_factory=list)


def run_extraction(
    videos: Union[Sequence[VideoItem], ShardSet],
    out_dir: Union[str, os.PathLike],
    model: nn.Module,
    cfg: ExtractConfig,
    *,
    decoder: str = DEFAULT_DECODER,
    device: Union[str, torch.device, None] = None,
    workers: int = 0,
    amp: Optional[str] = "auto",
    channels_last: Optional[bool] = None,
    format: str = "npy",
    dtype: str = "float32",
    shard_id: int = 0,
    num_shards: int = 1,
    resume: bool = True,
    progress: bool = True,
    model_name: Optional[str] = None,
    init_seed: Optional[int] = None,
    runtime: str = "eager",
    frames_fps: Optional[float] = None,
    calibration_clips: int = 32,
    force_int8: bool = False,
    optimize: Optional[bool] = None,
) -> ExtractSummary:
    """Extract features of ``videos[shard_id::num_shards]`` into ``out_dir`` (see the module docstring). ``videos``
    may be WebDataset shards: this job then takes ``shards[shard_id::num_shards]`` and names outputs by sample key.
    ``frames_fps``: the rate of frame folders whose item does not carry one (see :mod:`r21d_zoo.video.frames`).

    ``runtime``: see :func:`r21d_zoo.optimize_for_inference` (``optimize=True``, deprecated: ``"torch"``). With
    ``amp="int8"`` the model is calibrated on ``calibration_clips`` clips of the first videos
    (:func:`calibration_frames`) and checked on as many others against float32 (:func:`int8_agreement`: printed and
    recorded in ``extraction.json``); too little agreement is refused before any features are written, unless
    ``force_int8``."""
    runtime = renamed("run_extraction", "optimize", "torch" if optimize else None, "runtime", runtime)
    spec = ClipSpec.from_model(model, **cfg.clip)
    _stage_check(model, cfg.layer)
    store_format = feature_format(format)
    check_decoder(decoder)  # a decoder that cannot load here fails once, not once per video
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard id {shard_id} is not in 0..{num_shards - 1}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out, ".r21d-zoo.lock" if num_shards == 1 else f".r21d-zoo-shard-{shard_id}-of-{num_shards}.lock")
    with lock:  # a second live run of this shard into this folder is refused
        manifest = out / MANIFEST_FILE
        quantization, agreement, calibration = None, None, None
        if amp == INT8:
            reference = FeatureRunner(model, spec, cfg, device, "none", channels_last)
            resolve_runtime(runtime, reference.device, amp)  # an impossible choice fails before decoding
            frames, names = calibration_frames(videos, spec, cfg, calibration_clips, decoder, frames_fps)
            calibration = reference.clips(frames[0::2]).cpu()
            clips = dict(videos=names, clips=len(calibration), sha256=tensor_sha256(calibration))
            quantization = dict(dtype=INT8, recipe=INT8_RECIPE, calibration=clips)
        runner = FeatureRunner(model, spec, cfg, device, amp, channels_last, runtime, calibration)
        settings = extraction_settings(model, spec, cfg, format, dtype, model_name, init_seed, frames_fps, quantization)
        if quantization:
            agreement = int8_agreement(model, reference, runner, frames[1::2])
            check_int8_agreement(agreement, force_int8)
            settings["int8_agreement"] = agreement
        settings_id = check_settings(out, settings, resume)
        summary = ExtractSummary()
        store_format = store_format.for_job(settings, shard_id, num_shards)
        done = store_format.finished(out) if resume else _never
        on_gpu = decode_device(decoder, runner.device)
        if on_gpu is not None and workers:
            _logger.info("decoding with %s on %s in the main process (not in %d workers)", decoder, on_gpu, workers)
            workers = 0
        if isinstance(videos, ShardSet):
            chunks: ClipChunks = ShardClipChunks(videos.urls[shard_id::num_shards], spec, cfg, done, decoder, on_gpu)
            total = sum(videos.counts[shard_id::num_shards]) if videos.counts is not None else None
        else:
            mine = list(videos)[shard_id::num_shards]
            todo = [v for v in mine if not done(v.name)]
            summary.skipped = len(mine) - len(todo)
            chunks, total = ClipChunks(todo, spec, cfg, decoder, on_gpu, frames_fps), len(todo)
        loader = DataLoader(
            chunks,
            batch_size=None,
            num_workers=workers,
            pin_memory=runner.device.type == "cuda" and on_gpu is None,
            prefetch_factor=2 if workers else None,
        )
        bar = show_progress(total=total, unit="video", desc="extract", show=progress)
        pending: Dict[int, List[Any]] = {}
        started: Dict[int, float] = {}
        t_run = time.perf_counter()
        base = dict(model=model_name, settings=settings_id, rank=shard_id, num_shards=num_shards)
        for chunk in loader:
            name, video = chunk["name"], chunk["video"]
            if chunk.get("skipped"):
                summary.skipped += 1
                bar.update(1)
                continue
            if "error" in chunk:  # a video, or a damaged shard (named by its URL)
                pending.pop(name, None)
                started.pop(name, None)
                summary.failed += 1
                summary.failures.append(video)
                _logger.warning("failed: %s", chunk["error"])
                _append_line(manifest, dict(base, video=video, name=name, status="error", error=chunk["error"]))
                bar.update(1)
                continue
            if name not in started:
                started[name] = time.perf_counter()
                store_format.discard_partial(out, name)  # a killed run can leave it half-written
            parts = pending.setdefault(name, [])
            if len(chunk["frames"]):
                parts.append((runner(chunk["frames"]), chunk["times"], chunk["num_padded"]))
            if not chunk["last"]:
                continue
            del pending[name]
            result = cfg.in_segments(
                VideoFeatures(
                    torch.cat([p[0] for p in parts]).numpy(),
                    torch.cat([p[1] for p in parts]).numpy(),
                    torch.cat([p[2] for p in parts]).numpy(),
                    dict(chunk["info"], model=model_name),
                )
            )
            paths = store_format.write(out, name, result, dtype)
            seconds = time.perf_counter() - started.pop(name)
            n = len(result.features)
            summary.done += 1
            summary.clips += n
            _append_line(
                manifest,
                dict(
                    base,
                    video=video,
                    name=name,
                    status="ok",
                    num_clips=n,
                    feature_shape=list(result.features.shape),
                    padded_frames=int(result.num_padded.sum()),
                    duration=result.info["duration"],
                    fps=result.info["fps"],
                    **{k: result.info[k] for k in ("segment", "annotation") if k in result.info},
                    seconds=round(seconds, 4),
                    outputs=[p.name for p in paths],
                ),
            )
            bar.update(1)
            bar.set_postfix(clips_per_s=f"{summary.clips / (time.perf_counter() - t_run):.1f}")
        bar.close()
        summary.seconds = time.perf_counter() - t_run
        return summary


def _never(name: str) -> bool:
    return False


# ---------------------------------------------------------------------------------------------------------------------
# The command


@dataclass
class ExtractJobConfig(Checked):
    """Extract clip features of many videos (resumable; torchrun or --shard-id/--num-shards to scale out). Clip
    settings default to the weights' config (frames, fps, resize, crop, mean/std)."""

    out: str = field(metadata=dict(flag=("-o", "--out"), help="output directory"))
    inputs: List[str] = field(
        default_factory=list,
        metadata=dict(positional=True, help="video files, directories (recursive) or .txt/.csv lists of paths"),
    )
    data: Optional[str] = field(
        default=None,
        metadata=dict(help="or a labelled dataset (any annotation format): every sample, each segment on its own"),
    )
    labels: LabelOptions = field(default_factory=LabelOptions)
    model: ModelSource = field(default_factory=ModelSource)
    settings: ExtractConfig = field(default_factory=ExtractConfig)
    format: str = field(default="npy", metadata=dict(help="feature file format", choices=tuple(FEATURE_FORMATS)))
    dtype: Literal["float32", "float16"] = field(default="float32", metadata=dict(help="stored feature dtype"))
    decoder: str = field(default=DEFAULT_DECODER, metadata=dict(help="video decoding decoder", choices=DECODERS))
    workers: int = field(default_factory=default_workers, metadata=dict(help="decoding processes", bound=at_least(0)))
    device: Optional[str] = field(default=None, metadata=dict(help="default: this rank's GPU, else the CPU"))
    amp: InferenceAmp = field(default="auto", metadata=dict(help=INFERENCE_AMP_HELP))
    channels_last: Optional[bool] = field(default=None, metadata=dict(help=CHANNELS_LAST_HELP))
    runtime: str = field(
        default="eager",
        metadata=dict(help=RUNTIME_HELP, choices=RUNTIMES, deprecated_switch={"--optimize": "torch"}),
    )
    calibration_clips: int = field(
        default=32,
        metadata=dict(help="int8: clips to calibrate on (as many more check it against float32)", bound=at_least(1)),
    )
    force_int8: bool = field(
        default=False, metadata=dict(help="int8: keep int8 features that agree with float32 less than required")
    )
    shard_id: Optional[int] = field(
        default=None, metadata=dict(help="this job's shard (schedulers without torchrun)", bound=at_least(0))
    )
    num_shards: Optional[int] = field(default=None, metadata=dict(help="number of shards", bound=at_least(1)))
    overwrite: bool = field(default=False, metadata=dict(help="recompute videos that are already done"))
    seed: int = field(
        default=0, metadata=dict(help="seed of the --random-weights initialisation (recorded)", bound=at_least(0))
    )
    extensions: str = field(default=",".join(VIDEO_EXTENSIONS), metadata=dict(help="comma-separated, for folders"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.amp == INT8 and self.runtime not in ("onnxruntime", "auto"):
            raise UsageError(f"--amp int8 runs on --runtime onnxruntime (or auto), not on --runtime {self.runtime}")
        if self.shard_id is not None and self.shard_id >= (self.num_shards or 1):
            raise UsageError(
                f"--shard-id {self.shard_id}: must be below --num-shards ({self.num_shards or 1}); shards count from 0"
            )


def run(cfg: ExtractJobConfig) -> int:
    """``r21d-zoo extract``: exit 1 when any video failed (on any rank), 3 when the model, the inputs or the decoder
    are unusable (refused before any work)."""
    check_decoder(cfg.decoder)
    if bool(cfg.inputs) == bool(cfg.data):
        raise InputError("give the videos to extract (files, folders, lists, shards) or --data DATASET, one of the two")
    exclude = cfg.labels.exclude
    if cfg.data:
        videos: Union[List[VideoItem], ShardSet] = video_items(cfg.labels.read(cfg.data))  # --exclude applied
    else:
        frame_folders = cfg.decoder == FRAMES_DECODER
        videos = shard_inputs(cfg.inputs) or discover_videos(cfg.inputs, cfg.extensions.split(","), frame_folders)
        if not videos:
            hint = "" if frame_folders else "; folders of frame images need --decoder frames"
            raise InputError(f"no videos found in {' '.join(cfg.inputs)} (extensions {cfg.extensions}){hint}")
        if exclude and isinstance(videos, ShardSet):
            raise InputError("--exclude lists video files; shards are selected by key in `shards subset` and pretrain")
        if exclude:
            leave_out = read_video_list(exclude) or set()
            kept = [v for v in videos if resolved(v.path) not in leave_out]
            _logger.info("--exclude %s leaves out %d of %d videos", exclude, len(videos) - len(kept), len(videos))
            videos = kept
    writable_dir(cfg.out)
    world = world_info_from_env()
    if cfg.shard_id is not None or cfg.num_shards is not None:
        shard_id, num_shards = cfg.shard_id or 0, cfg.num_shards or 1
    else:
        world = init_distributed(world)
        shard_id, num_shards = world.rank, world.world_size
    seed = cfg.seed if cfg.model.random else None
    model = cfg.model.create(seed=seed)
    summary = run_extraction(
        videos,
        cfg.out,
        model,
        cfg.settings,
        decoder=cfg.decoder,
        device=default_device(world, cfg.device),
        workers=cfg.workers,
        amp=cfg.amp,
        channels_last=cfg.channels_last,
        format=cfg.format,
        dtype=cfg.dtype,
        shard_id=shard_id,
        num_shards=num_shards,
        resume=not cfg.overwrite,
        progress=shard_id == 0,
        model_name=cfg.model.name,
        init_seed=seed,
        runtime=cfg.runtime,
        frames_fps=cfg.labels.frames_fps,
        calibration_clips=cfg.calibration_clips,
        force_int8=cfg.force_int8,
    )
    failed = all_reduce_sum(summary.failed)
    print(
        f"shard {shard_id}/{num_shards}: {summary.done} extracted ({summary.clips} clips, "
        f"{summary.clips / max(summary.seconds, 1e-9):.1f} clips/s), {summary.skipped} already done, "
        f"{summary.failed} failed -> {cfg.out}/{MANIFEST_FILE}"
    )
    return EXIT_PARTIAL if failed else 0
