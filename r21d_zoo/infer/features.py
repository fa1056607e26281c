"""Features of clips under a runtime, and the pieces every extraction engine shares: :class:`FeatureRunner` (crop,
normalise and run a batch of uint8 clips on the device), :class:`ClipChunks` (a video's decoded clips in chunks),
:func:`extract_features` (one video in-process), int8 calibrated on the user's videos, and the feature folder's side
(:func:`extraction_settings`, :func:`check_settings`, :func:`this_jobs_part`, :class:`FolderWriter`), which
:func:`r21d_zoo.infer.extraction.run_extraction` and the Ray engine (:mod:`r21d_zoo.infer.cluster`) write through.
"""

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.utils.data import IterableDataset, get_worker_info

from .._errors import InputError
from .._io import append_text, atomic_write, content_identity
from .._version import __version__
from ..data.features import MANIFEST_FILE, RUNS_FILE, SETTINGS_FILE, FeatureStore, VideoFeatures
from ..data.features import FeatureFormat, flat_settings
from ..data.inputs import VideoItem
from ..data.labelled import segment_span
from ..data.shards import VIDEO_MEMBERS as SHARD_VIDEO_EXTS, ShardSet, shard_samples
from ..deploy.choice import choose_runtime
from ..deploy.optimize import optimize_for_inference, resolve_runtime
from ..deploy.placement import Placement
from ..models import ClipSpec, state_dict_sha256
from ..video import VideoClassificationTransform, VideoDecodeError
from ..video.reader import DecodeOptions, renamed
from .config import POOLS, ExtractConfig, InferenceOptions

_logger = logging.getLogger(__name__)


def stage_index(model: nn.Module, layer: Union[str, int], also: Sequence[str] = ()) -> int:
    """The index in ``model.feature_info`` of a stage named by name or index; an unknown one is a ValueError that
    offers the stages, and ``also`` (what else the caller takes, e.g. ``pre_logits``)."""
    names = [f["module"] for f in model.feature_info]
    if isinstance(layer, int) or str(layer).isdigit():
        index = int(layer)
        if not 0 <= index < len(names):
            raise ValueError(f"layer index {layer} is out of range; the model has stages 0-{len(names) - 1}: {names}")
        return index
    if layer not in names:
        others = "".join(f"{name!r}, " for name in also)
        raise ValueError(
            f"unknown layer {layer!r}; choose {others}a stage ({', '.join(names)}) or its index 0-{len(names) - 1}"
        )
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
        fmap = model.forward_intermediates(x, [stage_index(model, layer)], stop_early=True, intermediates_only=True)[0]
    return _pool(fmap, spatial_pool, temporal_pool)


def _blank_frames(spec: ClipSpec, batch: int, channels: int, device: torch.device) -> torch.Tensor:
    """``batch`` black uint8 clips (B, T, H, W, C) of ``spec``'s frames as a reader hands them to the runner."""
    size = spec.resize_size if isinstance(spec.resize_size, tuple) else (spec.crop_size, spec.crop_size)
    return torch.zeros(batch, spec.num_frames, *size, channels, dtype=torch.uint8, device=device)


def auto_runtime(
    model: nn.Module,
    spec: ClipSpec,
    transform: VideoClassificationTransform,
    batch: int,
    amp: Optional[str],
    device: torch.device,
    beside_decoders: bool = False,
) -> str:
    """``runtime="auto"`` for ``model`` fed ``batch`` videos' clips of ``spec`` through ``transform``: the fastest,
    measured once (:func:`~r21d_zoo.deploy.choice.choose_runtime`) on clips in the memory layout ``transform`` gives
    them (channels-last-like strides from its (T, H, W, C) frames), which decides eager's speed."""
    with torch.inference_mode():
        example = transform(_blank_frames(spec, batch, transform.in_chans, device))
    runtime, _ = choose_runtime(model, tuple(example.shape), amp, device, example=example,
                                beside_decoders=beside_decoders)  # fmt: skip
    return runtime


class FeatureRunner:
    """Moves uint8 clips to the device, crops and normalises there, and runs the model: with ``runtime="eager"`` as
    it is, with the precision and memory format of :mod:`r21d_zoo.deploy.placement` (``amp="auto"``: bf16 on GPU,
    float32 on CPU); with another runtime (:data:`~r21d_zoo.deploy.optimize.RUNTIMES`) through
    :func:`optimize_for_inference`, which then applies them (``amp="int8"`` needs ``calibration`` clips); ``auto``
    (the default) takes the fastest, measured once for this model, clip, batch and machine on clips as this runner
    makes them (:mod:`r21d_zoo.deploy.choice`; ``beside_decoders``: decoding workers share the CPU with it).
    ``runtime`` says which it runs on."""

    def __init__(
        self,
        model: nn.Module,
        spec: ClipSpec,
        cfg: ExtractConfig,
        inference: Optional[InferenceOptions] = None,
        calibration: Optional[torch.Tensor] = None,
        beside_decoders: bool = False,
        **legacy: Any,
    ):
        opts = InferenceOptions.from_legacy("FeatureRunner", inference, legacy)
        self.device = torch.device(opts.device) if opts.device else next(model.parameters()).device
        model = model.eval().to(self.device)
        amp, channels_last = opts.amp, opts.channels_last
        self.crops = 3 if spec.crop_mode == "three" else 1
        self.transform = VideoClassificationTransform.from_spec(spec).to(self.device)
        runtime = opts.runtime
        if runtime == "auto":
            runtime = auto_runtime(model, spec, self.transform, cfg.batch_size, amp, self.device, beside_decoders)
        self.runtime = resolve_runtime(runtime, self.device, amp)  # the runtime it runs on
        if self.runtime == "eager":
            place = Placement.create(self.device, amp, channels_last, model)
        else:
            model = optimize_for_inference(
                model, channels_last=channels_last, amp=amp, runtime=self.runtime, calibration=calibration
            )
            place = Placement(self.device)  # precision and layout are inside the optimised model
        self.place = place
        self.model = place.place(model)
        self.cfg, self.spec = cfg, spec

    def warm_up(self) -> None:
        """One call on black clips: an optimised runtime traces or compiles on its first call (seconds for
        ``torch``), which a caller waiting on every answer (a live stream) makes before its first input arrives."""
        self.logits(_blank_frames(self.spec, self.cfg.batch_size, self.transform.in_chans, self.device))

    @torch.inference_mode()
    def clips(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, H, W, C) -> the model's normalised input clips (B * crops, C, T, H, W) on the device."""
        frames = frames.to(self.device, non_blocking=True)
        if self.cfg.mirror:
            frames = frames.flip(-2)  # (B, T, H, W, C): the frames of the mirrored video, before resizing and cropping
        return self.place.prepare(self.transform(frames))

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, C) -> float32 features (B, ...) on the CPU."""
        x, cfg = self.clips(frames), self.cfg
        with self.place.autocast():
            f = clip_features(self.model, x, cfg.layer, cfg.spatial_pool, cfg.temporal_pool)
        f = f.float()
        if self.crops > 1:
            f = f.reshape(-1, self.crops, *f.shape[1:]).mean(1)
        return f.cpu()

    @torch.inference_mode()
    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """The logits of ``frames``' clips (B * crops, classes) on the CPU, from the feature graph where it can."""
        x = self.clips(frames)
        with self.place.autocast():
            if self.cfg.layer == "pre_logits":
                return self.model.forward_head(self.model.forward_features(x)).float().cpu()
            return self.model(x).float().cpu()


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
        decode: DecodeOptions = DecodeOptions(),
        device: Optional[torch.device] = None,
    ):
        self.videos, self.spec, self.cfg, self.device = list(videos), spec, cfg, device
        self.decode = replace(decode, fast_resize=decode.fast_resize or cfg.fast_resize)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        wid, nw = _worker()
        for v in self.videos[wid::nw]:
            yield from self.chunks(v.path, v)

    def chunks(self, source: Union[str, bytes], item: VideoItem) -> Iterator[Dict[str, Any]]:
        """The chunks of one video read from ``source`` (a path, or the encoded bytes of a shard member)."""
        cfg, start = self.cfg, time.perf_counter()
        head = dict(name=item.name, video=item.path)
        try:
            with self.decode.open(source, self.spec, self.device, item.frames_fps) as reader:
                span = segment_span(item, reader.info.duration) if item.segment else None
                clips = cfg.clips_for(self.spec, reader.info, span)
                head["clips_total"] = len(clips)
                batch: List[Tuple[Any, Any]] = []
                end = span[0] + span[1] if span is not None else None  # a segment's clips hold none of the next
                for n, (clip, frames) in enumerate(reader.iter_clips(clips, self.spec, cfg.pad, end)):
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
    def _chunk(head: Dict[str, Any], batch: List[Tuple[Any, Any]], info: Optional[Dict[str, Any]]) -> Dict[str, Any]:
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
        decode: DecodeOptions = DecodeOptions(),
        device: Optional[torch.device] = None,
    ):
        super().__init__([], spec, cfg, decode, device)
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


def extract_features(
    model: nn.Module,
    video: Union[str, os.PathLike],
    cfg: Optional[ExtractConfig] = None,
    inference: Optional[InferenceOptions] = None,
    decode: Optional[DecodeOptions] = None,
    **overrides: Any,
) -> VideoFeatures:
    """Features of every clip of one video. Keyword overrides replace fields of ``cfg`` (``num_clips=10``,
    ``layer="layer3"``, ``spatial_pool="none"``) or of the weights' clip (``num_frames=8``, ``crop_mode="three"``).
    ``inference``: where and how the model runs (a runtime other than eager goes through
    :func:`r21d_zoo.optimize_for_inference`, float32; int8 is for :func:`run_extraction`, which calibrates);
    ``decode``: how the video is decoded (``video`` may be a frame folder, see :mod:`r21d_zoo.video.frames`). The
    0.x keywords ``device``, ``amp``, ``runtime``, ``optimize=True``, ``decoder`` (``backend``), ``frames_fps``,
    ``decoder_resize`` and ``clip_stride`` work, with a warning."""
    legacy = {k: overrides.pop(k) for k in ("device", "amp", "runtime", "optimize") if k in overrides}
    inference = InferenceOptions.from_legacy("extract_features", inference, legacy)
    decoder = renamed("extract_features", "backend", overrides.pop("backend", None), "decoder", None)
    decoder = renamed("extract_features", "decoder", overrides.pop("decoder", None), "decode", decoder)
    frames_fps = renamed("extract_features", "frames_fps", overrides.pop("frames_fps", None), "decode", None)
    decode = decode or DecodeOptions()
    if decoder or frames_fps:
        decode = replace(decode, decoder=decoder or decode.decoder, frames_fps=frames_fps or decode.frames_fps)
    for old, new in (("decoder_resize", "fast_resize"), ("clip_stride", "stride_sec")):
        if old in overrides:
            overrides[new] = renamed("extract_features", old, overrides.pop(old), new, None)
    clip_overrides = {k: overrides.pop(k) for k in ClipSpec.fields() if k in overrides}
    cfg = replace(cfg or ExtractConfig(), **overrides)
    spec = ClipSpec.from_model(model, **cfg.clip, **clip_overrides)
    runner = FeatureRunner(model, spec, cfg, inference)
    feats, times, padded = [], [], []
    chunks = ClipChunks([], spec, cfg, decode, decode.decode_device(runner.device))
    for chunk in chunks.chunks(str(video), VideoItem(str(video), Path(video).stem)):
        if "error" in chunk:
            raise VideoDecodeError(chunk["error"])
        if len(chunk["frames"]):
            feats.append(runner(chunk["frames"]))
            times.append(chunk["times"])
            padded.append(chunk["num_padded"])
    result = VideoFeatures(torch.cat(feats).numpy(), torch.cat(times).numpy(), torch.cat(padded).numpy(), chunk["info"])
    return cfg.in_segments(result)


CALIBRATION_CLIPS_PER_VIDEO = 4


INT8_MIN_COSINE = 0.99  # mean per-clip cosine of int8 features with float32's


INT8_MIN_TOP1 = 0.95  # share of clips whose int8 logits have float32's top-1 class


def calibration_frames(
    videos: Union[Sequence[VideoItem], ShardSet],
    spec: ClipSpec,
    cfg: ExtractConfig,
    count: int,
    decode: DecodeOptions = DecodeOptions(),
) -> Tuple[torch.Tensor, List[str]]:
    """uint8 frames of up to ``2 * count`` clips (the even ones calibrate int8, the odd ones check it): 4 uniformly
    spaced clips per video from the first videos of the whole input, the same on every shard and on resume (of
    WebDataset input, from its first shard), and the names of those videos. Videos that fail are passed over."""
    per_video = CALIBRATION_CLIPS_PER_VIDEO
    sampling = replace(  # one chunk per video
        cfg, num_clips=per_video, stride_sec=None, feature_fps=None, centered=False, segments=None, batch_size=per_video
    )
    if isinstance(videos, ShardSet):
        chunks: ClipChunks = ShardClipChunks(videos.urls[:1], spec, sampling, _never, decode)
    else:
        chunks = ClipChunks(list(videos), spec, sampling, decode)
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


def _append_line(path: Path, record: Dict[str, Any]) -> None:
    """A JSON line, appended whole (ranks share a manifest)."""
    append_text(path, json.dumps(record, sort_keys=True, default=str) + "\n")


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
    busy: Dict[str, Dict[str, float]] = field(default_factory=dict)  # per stage (Ray): busy seconds and workers


@dataclass
class JobPart:
    """This job's part of the input, without what an earlier run finished (and that did not change since): videos,
    or WebDataset shard URLs whose samples ``done`` says are finished; ``total``: how many videos that is (None:
    unknown, for shards without an index)."""

    videos: List[VideoItem]
    shard_urls: Optional[List[str]]
    done: Callable[[str], bool]
    total: Optional[int]

    def chunks(self, spec: ClipSpec, cfg: ExtractConfig, decode: DecodeOptions,
               on_gpu: Optional[torch.device] = None) -> ClipChunks:  # fmt: skip
        if self.shard_urls is not None:
            return ShardClipChunks(self.shard_urls, spec, cfg, self.done, decode, on_gpu)
        return ClipChunks(self.videos, spec, cfg, decode, on_gpu)


def this_jobs_part(
    videos: Union[Sequence[VideoItem], ShardSet], writer: "FolderWriter", shard_id: int, num_shards: int, resume: bool
) -> JobPart:
    done = writer.format.finished(writer.out) if resume else _never
    if isinstance(videos, ShardSet):
        total = sum(videos.counts[shard_id::num_shards]) if videos.counts is not None else None
        return JobPart([], videos.urls[shard_id::num_shards], done, total)
    mine = list(videos)[shard_id::num_shards]
    changed = _changed_since(writer.manifest) if resume else _never
    todo = [v for v in mine if not done(v.name) or changed(v)]
    writer.summary.skipped = len(mine) - len(todo)
    return JobPart(todo, None, done, len(todo))


class FolderWriter:
    """Turns a video's chunks into its features as they arrive, writes them in the output format, and records each
    video (done or failed) in the manifest."""

    def __init__(self, out: Path, format: FeatureFormat, cfg: ExtractConfig, dtype: str, model_name: Optional[str]):
        self.out, self.format, self.cfg, self.dtype, self.model_name = out, format, cfg, dtype, model_name
        self.manifest = out / MANIFEST_FILE
        self.base: Dict[str, Any] = dict(model=model_name)
        self.summary = ExtractSummary()
        self.pending: Dict[str, List[Any]] = {}
        self.started: Dict[str, float] = {}

    def run(self, loader: Iterable[Dict[str, Any]], runner: FeatureRunner, bar: Any) -> ExtractSummary:
        t_run, summary = time.perf_counter(), self.summary
        for chunk in loader:
            name, video = chunk["name"], chunk["video"]
            if chunk.get("skipped"):
                summary.skipped += 1
            elif "error" in chunk:  # a video, or a damaged shard (named by its URL)
                self.failed(name, video, chunk["error"])
            else:
                features = runner(chunk["frames"]) if len(chunk["frames"]) else None
                parts = self.add(name, features, chunk["times"], chunk["num_padded"])
                if not chunk["last"]:  # a long video: say how far into it, not only how many videos are done
                    done = sum(len(p[1]) for p in parts)
                    bar.set_postfix(video=name, clips=f"{done}/{chunk.get('clips_total', '?')}")
                    bar.update(0)
                    continue
                self.write(name, video, chunk["info"])
                bar.set_postfix(clips_per_s=f"{summary.clips / (time.perf_counter() - t_run):.1f}")
            bar.update(1)
        bar.close()
        return self.finish("local", t_run)

    def finish(self, engine: str, started: float) -> ExtractSummary:
        """The run's summary, its time counted from ``started`` (``time.perf_counter()``), and its line in
        ``OUT/runs.jsonl``: the engine, the counts, clips/s and (Ray) each stage's busy workers."""
        s = self.summary
        s.seconds = time.perf_counter() - started
        _append_line(self.out / RUNS_FILE, dict(
            engine=engine, rank=self.base.get("rank", 0), num_shards=self.base.get("num_shards", 1), done=s.done,
            skipped=s.skipped, failed=s.failed, clips=s.clips, seconds=round(s.seconds, 3),
            clips_per_s=round(s.clips / max(s.seconds, 1e-9), 3), busy=s.busy, settings=self.base.get("settings"),
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ))  # fmt: skip
        return s

    def failed(self, name: str, video: str, error: str) -> None:
        self.pending.pop(name, None)
        self.started.pop(name, None)
        self.summary.failed += 1
        self.summary.failures.append(video)
        _logger.warning("failed: %s", error)
        _append_line(self.manifest, dict(self.base, video=video, name=name, status="error", error=error))

    def add(
        self, name: str, features: Optional[torch.Tensor], times: torch.Tensor, num_padded: torch.Tensor
    ) -> List[Any]:
        """Keep the features of a chunk of ``name``'s clips (None: a video with no clips), in order."""
        if name not in self.started:
            self.started[name] = time.perf_counter()
            self.format.discard_partial(self.out, name)  # a killed run can leave it half-written
        parts = self.pending.setdefault(name, [])
        if features is not None:
            parts.append((features, times, num_padded))
        return parts

    def write(self, name: str, video: str, info: Dict[str, Any], seconds: Optional[float] = None) -> None:
        """Write ``name``'s features and its manifest line; ``seconds``: the time spent on it, when the writer did
        not see it spent (default: since its first chunk arrived)."""
        parts = self.pending.pop(name)
        result = self.cfg.in_segments(
            VideoFeatures(
                torch.cat([p[0] for p in parts]).numpy(),
                torch.cat([p[1] for p in parts]).numpy(),
                torch.cat([p[2] for p in parts]).numpy(),
                dict(info, model=self.model_name),
            )
        )
        paths = self.format.write(self.out, name, result, self.dtype)
        started = self.started.pop(name)
        seconds = time.perf_counter() - started if seconds is None else seconds
        n = len(result.features)
        self.summary.done += 1
        self.summary.clips += n
        record = dict(
            self.base,
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
            identity=content_identity(video) if isinstance(video, str) else None,
        )
        _append_line(self.manifest, record)


def _never(name: Any) -> bool:
    return False


def _changed_since(manifest: Path) -> Callable[[VideoItem], bool]:
    """Whether a video differs (size or time) from the one an earlier run's manifest says it extracted; its outputs
    are then made again rather than trusted by name."""
    recorded: Dict[str, Any] = {}
    if manifest.exists():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if row.get("status") == "ok" and row.get("identity") is not None:
                recorded[row["name"]] = row["identity"]

    def changed(item: VideoItem) -> bool:
        if item.name in recorded and recorded[item.name] != content_identity(item.path):
            _logger.info("%s changed since it was extracted: extracting it again", item.path)
            return True
        return False

    return changed
