"""Feature extraction: clips sampled over whole videos, decoded in DataLoader workers, batched through the model.

:func:`extract_features` handles one video in-process. :func:`run_extraction` (``r21d-zoo extract``) handles many:
workers decode and resize to uint8, the model runs batched on the device (crop + normalise there), each video's
features are written atomically to ``OUT/<name>.npy`` (+ ``<name>.times.npy``) or ``OUT/<name>.safetensors``, and
``OUT/manifest.jsonl`` gets one line per processed video. Finished videos are skipped on re-runs; failures are
recorded and the run carries on. Shards (``torchrun`` ranks or ``shard_id``/``num_shards``) take ``videos[i::n]`` of
the sorted list: no padding, no duplicates.
"""

import contextlib
import csv
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ._io import atomic_write, partial_path
from .models._pretrained import KINETICS_MEAN, KINETICS_STD
from .optimize import AMP_DTYPES, optimize_for_inference
from .transforms import VideoClassificationTransform, resolve_data_config
from .video import VideoDecodeError, VideoInfo, VideoReader, clip_duration, sliding_clips, uniform_clips

_logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
POOLS = ("avg", "max", "none")


@dataclass
class ExtractConfig:
    """How clips are sampled, preprocessed and turned into features. :meth:`from_model` fills it from the weights."""

    num_frames: int = 16
    frame_rate: Optional[float] = None  # resample to this fps; None: consecutive native frames
    sampling_stride: int = 1
    clip_stride: Optional[float] = None  # seconds between sliding clip starts; None: back to back
    num_clips: Optional[int] = None  # N uniformly spaced clips instead of sliding windows
    pad: str = "repeat"  # the last clip is padded: repeat the last frame, or loop the clip's frames
    resize_size: Union[int, Tuple[int, int], None] = (128, 171)
    decoder_resize: bool = False  # resize inside the decoder (swscale; faster, not the reference preprocessing)
    crop_size: int = 112
    crop_mode: str = "center"  # or "three": features averaged over three crops
    interpolation: str = "bilinear"
    antialias: bool = False
    mean: Tuple[float, ...] = KINETICS_MEAN
    std: Tuple[float, ...] = KINETICS_STD
    layer: Union[str, int] = "pre_logits"  # "pre_logits", "logits", or a feature_info stage: "layer3" or 3
    spatial_pool: str = "avg"
    temporal_pool: str = "avg"
    batch_size: int = 8  # clips per forward pass

    @classmethod
    def from_model(cls, model_or_cfg: Any, **overrides: Any) -> "ExtractConfig":
        """Defaults from a model's (or a ``PretrainedCfg``'s) weights; ``None`` overrides are ignored."""
        has_cfg = not isinstance(model_or_cfg, nn.Module) or getattr(model_or_cfg, "pretrained_cfg", None)
        data = resolve_data_config(model_or_cfg) if has_cfg else {}
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**fields)

    def clip_seconds(self, info: VideoInfo) -> float:
        return clip_duration(self.num_frames, self.frame_rate or info.fps, self.sampling_stride)

    def clips_for(self, info: VideoInfo):
        length = self.clip_seconds(info)
        if self.num_clips:
            return uniform_clips(info.duration, length, self.num_clips)
        return sliding_clips(info.duration, length, self.clip_stride)

    def transform(self) -> VideoClassificationTransform:
        return VideoClassificationTransform(
            self.resize_size, self.crop_size, self.mean, self.std, self.interpolation, self.antialias, self.crop_mode
        )


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
    """Moves uint8 clips to the device, crops and normalises there, and runs the model: eager (autocast and
    channels_last_3d on GPU only; float32 on CPU) or, with ``optimize``, through :func:`optimize_for_inference`."""

    def __init__(
        self,
        model: nn.Module,
        cfg: ExtractConfig,
        device: Union[str, torch.device, None] = None,
        amp: Optional[str] = "auto",
        channels_last: Optional[bool] = None,
        optimize: bool = False,
    ):
        self.device = torch.device(device) if device else next(model.parameters()).device
        cuda = self.device.type == "cuda"
        amp = {"auto": "bf16" if cuda else None, "none": None}.get(amp, amp)
        if amp is not None and amp not in AMP_DTYPES:
            raise ValueError(f"amp must be 'auto', 'none' or one of {list(AMP_DTYPES)}, got {amp!r}")
        if not cuda and amp is not None:
            _logger.info("autocast is for GPUs; running in float32 on %s", self.device)
            amp = None
        model = model.eval().to(self.device)
        if optimize:
            model = optimize_for_inference(model, channels_last=channels_last, amp=amp or "none")
            amp, channels_last = None, False  # done inside the optimised model
        self.amp_dtype = AMP_DTYPES.get(amp)
        self.channels_last = cuda if channels_last is None else channels_last
        self.model = model.to(memory_format=torch.channels_last_3d) if self.channels_last else model
        self.cfg = cfg
        self.transform = cfg.transform().to(self.device)
        self.crops = 3 if cfg.crop_mode == "three" else 1

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, C) -> float32 features (B, ...) on the CPU."""
        x = self.transform(frames.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            f = clip_features(self.model, x, self.cfg.layer, self.cfg.spatial_pool, self.cfg.temporal_pool)
        f = f.float()
        if self.crops > 1:
            f = f.reshape(-1, self.crops, *f.shape[1:]).mean(1)
        return f.cpu()


# ---------------------------------------------------------------------------------------------------------------------
# Decoding in workers


class ClipChunks(IterableDataset):
    """Yields, per video, chunks of at most ``batch_size`` resized uint8 clips; the last chunk has ``last=True`` and
    the video's info. A video that fails yields one ``error`` item instead (earlier chunks of it must be discarded).
    Videos are split across DataLoader workers round-robin; containers are opened inside the worker."""

    def __init__(self, videos: Sequence[str], cfg: ExtractConfig, indices: Optional[Sequence[int]] = None):
        self.videos = list(videos)
        self.indices = list(indices) if indices is not None else list(range(len(self.videos)))
        self.cfg = cfg

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        worker = get_worker_info()
        wid, nw = (worker.id, worker.num_workers) if worker else (0, 1)
        for j in range(wid, len(self.videos), nw):
            yield from self.chunks(j)

    def chunks(self, j: int) -> Iterator[Dict[str, Any]]:
        cfg, idx, path = self.cfg, self.indices[j], self.videos[j]
        start = time.perf_counter()
        resize = dict(frame_size=cfg.resize_size) if cfg.decoder_resize else dict(resize=cfg.resize_size)
        try:
            with VideoReader(path, **resize) as reader:
                clips = cfg.clips_for(reader.info)
                batch: List[Tuple[Any, Any]] = []
                for n, (clip, frames) in enumerate(
                    reader.iter_clips(clips, cfg.num_frames, cfg.frame_rate, cfg.sampling_stride, cfg.pad)
                ):
                    batch.append((clip, frames))
                    if len(batch) == cfg.batch_size and n < len(clips) - 1:
                        yield self._chunk(idx, batch, None)
                        batch = []
                info = asdict(reader.info)
                info["decode_seconds"] = time.perf_counter() - start
                yield self._chunk(idx, batch, info)
        except Exception as e:  # one bad video must not stop a batch job; the error is recorded in the manifest
            message = str(e) if isinstance(e, VideoDecodeError) else f"{path}: {type(e).__name__}: {e}"
            yield dict(video=idx, error=message)

    @staticmethod
    def _chunk(idx: int, batch: List[Tuple[Any, Any]], info: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        return dict(
            video=idx,
            frames=torch.stack([f.frames for _, f in batch]),
            times=torch.tensor([[c.start, c.end] for c, _ in batch], dtype=torch.float64),
            num_padded=torch.tensor([f.num_padded for _, f in batch]),
            last=info is not None,
            info=info,
        )


@dataclass
class VideoFeatures:
    features: np.ndarray  # float32 (num_clips, ...)
    clip_times: np.ndarray  # float64 (num_clips, 2): start, end seconds (the last may end after the video)
    num_padded: np.ndarray  # int (num_clips,): padded frames per clip
    info: Dict[str, Any] = field(default_factory=dict)


def extract_features(
    model: nn.Module,
    video: Union[str, os.PathLike],
    cfg: Optional[ExtractConfig] = None,
    device: Union[str, torch.device, None] = None,
    amp: Optional[str] = "auto",
    optimize: bool = False,
    **overrides: Any,
) -> VideoFeatures:
    """Features of every clip of one video. ``cfg`` (or keyword overrides of it, e.g. ``num_clips=10``,
    ``layer="layer3"``, ``spatial_pool="none"``) defaults to the model's weights' preprocessing. ``optimize`` runs
    the model through :func:`r21d_zoo.optimize_for_inference`."""
    cfg = replace(cfg, **overrides) if cfg is not None else ExtractConfig.from_model(model, **overrides)
    runner = FeatureRunner(model, cfg, device, amp, optimize=optimize)
    feats, times, padded = [], [], []
    for chunk in ClipChunks([str(video)], cfg).chunks(0):
        if "error" in chunk:
            raise VideoDecodeError(chunk["error"])
        if len(chunk["frames"]):
            feats.append(runner(chunk["frames"]))
            times.append(chunk["times"])
            padded.append(chunk["num_padded"])
    return VideoFeatures(torch.cat(feats).numpy(), torch.cat(times).numpy(), torch.cat(padded).numpy(), chunk["info"])


# ---------------------------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class VideoItem:
    path: str
    name: str  # output name, relative to the output directory, without extension


def discover_videos(
    inputs: Sequence[Union[str, os.PathLike]], extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> List[VideoItem]:
    """Files, directories (searched recursively by extension; names keep the sub-directories) and ``.txt``/``.csv``
    lists (one path per line, or a ``path``/``video`` column; relative paths are taken from the list's folder).
    Sorted by name; two inputs with the same output name are an error."""
    items: List[VideoItem] = []
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in exts:
                    items.append(VideoItem(str(f), f.relative_to(p).with_suffix("").as_posix()))
        elif p.suffix.lower() in (".txt", ".csv", ".lst") and p.is_file():
            for entry in _read_list(p):
                q = Path(entry)
                q = q if q.is_absolute() else p.parent / q
                items.append(VideoItem(str(q), q.stem))
        else:  # a video file; a missing one is recorded as a failure when it is processed
            items.append(VideoItem(str(p), p.stem))
    items.sort(key=lambda v: (v.name, v.path))
    seen: Dict[str, str] = {}
    for v in items:
        if v.name in seen and seen[v.name] != v.path:
            raise ValueError(
                f"{seen[v.name]} and {v.path} would both be written as '{v.name}'; pass their parent directory "
                "instead (names then keep sub-folders) or rename one"
            )
        seen[v.name] = v.path
    return list({v.name: v for v in items}.values())


def _read_list(path: Path) -> List[str]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if path.suffix.lower() != ".csv":
        return [ln.strip() for ln in lines]
    rows = list(csv.reader(lines))
    header = [c.strip().lower() for c in rows[0]]
    column = next((header.index(k) for k in ("path", "video", "filename") if k in header), None)
    return [r[column or 0].strip() for r in (rows[1:] if column is not None else rows)]


OUTPUT_FORMATS = ("npy", "safetensors")


def output_paths(out_dir: Path, name: str, fmt: str) -> List[Path]:
    """The files of one finished video (all must exist for it to count as done)."""
    if fmt == "npy":
        return [out_dir / f"{name}.times.npy", out_dir / f"{name}.npy"]  # features last: written last
    return [out_dir / f"{name}.safetensors"]


def write_features(
    out_dir: Path, name: str, result: VideoFeatures, fmt: str = "npy", dtype: str = "float32"
) -> List[Path]:
    features = result.features.astype(dtype)
    paths = output_paths(out_dir, name, fmt)
    if fmt == "npy":
        atomic_write(paths[0], lambda f: np.save(f, result.clip_times))
        atomic_write(paths[1], lambda f: np.save(f, features))
    else:
        from safetensors.numpy import save

        data = save(
            dict(features=features, clip_times=result.clip_times, num_padded=result.num_padded.astype(np.int64)),
            metadata={k: json.dumps(v) for k, v in result.info.items()},
        )
        atomic_write(paths[0], lambda f: f.write(data))
    return paths


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


@dataclass
class ExtractSummary:
    done: int = 0
    skipped: int = 0  # finished in an earlier run
    failed: int = 0
    clips: int = 0
    seconds: float = 0.0
    failures: List[str] = field(default_factory=list)


def run_extraction(
    videos: Sequence[VideoItem],
    out_dir: Union[str, os.PathLike],
    model: nn.Module,
    cfg: ExtractConfig,
    *,
    device: Union[str, torch.device, None] = None,
    workers: int = 0,
    amp: Optional[str] = "auto",
    channels_last: Optional[bool] = None,
    fmt: str = "npy",
    dtype: str = "float32",
    shard_id: int = 0,
    num_shards: int = 1,
    resume: bool = True,
    progress: bool = True,
    model_name: Optional[str] = None,
    optimize: bool = False,
) -> ExtractSummary:
    """Extract features of ``videos[shard_id::num_shards]`` into ``out_dir`` (see the module docstring)."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard id {shard_id} is not in 0..{num_shards - 1}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    shard = list(videos)[shard_id::num_shards]
    summary = ExtractSummary()
    todo = []
    for v in shard:
        paths = output_paths(out, v.name, fmt)
        if resume and all(p.exists() for p in paths):
            summary.skipped += 1
            continue
        for p in paths:  # a killed run can leave a temp file; only this shard writes these names
            partial_path(p).unlink(missing_ok=True)
        todo.append(v)
    runner = FeatureRunner(model, cfg, device, amp, channels_last, optimize)
    loader = DataLoader(
        ClipChunks([v.path for v in todo], cfg),
        batch_size=None,
        num_workers=workers,
        pin_memory=runner.device.type == "cuda",
        prefetch_factor=2 if workers else None,
    )
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="video", disable=not progress or not sys.stderr.isatty(), desc="extract")
    pending: Dict[int, List[Any]] = {}
    started: Dict[int, float] = {}
    t_run = time.perf_counter()
    base = dict(model=model_name, rank=shard_id, num_shards=num_shards)
    for chunk in loader:
        j = chunk["video"]
        v = todo[j]
        started.setdefault(j, time.perf_counter())
        if "error" in chunk:
            pending.pop(j, None)
            summary.failed += 1
            summary.failures.append(v.path)
            _logger.warning("failed: %s", chunk["error"])
            _append_line(manifest, dict(base, video=v.path, name=v.name, status="error", error=chunk["error"]))
            bar.update(1)
            continue
        parts = pending.setdefault(j, [])
        if len(chunk["frames"]):
            parts.append((runner(chunk["frames"]), chunk["times"], chunk["num_padded"]))
        if not chunk["last"]:
            continue
        del pending[j]
        result = VideoFeatures(
            torch.cat([p[0] for p in parts]).numpy(),
            torch.cat([p[1] for p in parts]).numpy(),
            torch.cat([p[2] for p in parts]).numpy(),
            dict(chunk["info"], model=model_name),
        )
        paths = write_features(out, v.name, result, fmt, dtype)
        seconds = time.perf_counter() - started.pop(j)
        n = len(result.features)
        summary.done += 1
        summary.clips += n
        _append_line(
            manifest,
            dict(
                base,
                video=v.path,
                name=v.name,
                status="ok",
                num_clips=n,
                feature_shape=list(result.features.shape),
                padded_frames=int(result.num_padded.sum()),
                duration=result.info["duration"],
                fps=result.info["fps"],
                seconds=round(seconds, 4),
                outputs=[p.name for p in paths],
            ),
        )
        bar.update(1)
        bar.set_postfix(clips_per_s=f"{summary.clips / (time.perf_counter() - t_run):.1f}")
    bar.close()
    summary.seconds = time.perf_counter() - t_run
    return summary
