"""Many videos into a resumable feature folder: :func:`run_extraction` (``r21d-zoo extract``).

Decoding workers read and resize clips to uint8, the model runs batched on the device (crop + normalise there), each
video's features are written atomically to ``OUT/<name>.npy`` (+ ``<name>.times.npy``), ``OUT/<name>.safetensors`` or
a dataset of ``OUT/features.h5`` (see :mod:`r21d_zoo.data.features`), and ``OUT/manifest.jsonl`` gets one line per
processed video, naming the settings it was made with (``OUT/extraction.json``: model, weights digest, layer, pooling,
clip settings, dtype, format). Finished videos are skipped on re-runs with the same settings; a folder made with other
settings is refused before any work. Failures are recorded and the run carries on. Shards (``torchrun`` ranks, a SLURM
array or ``shard_id``/``num_shards``) take ``videos[i::n]`` of the sorted list: no padding, no duplicates. The engine
says where the work runs: this process with DataLoader workers (``local``), or a Ray cluster
(``ray``, :mod:`r21d_zoo.infer.cluster`), into the same folder.
"""

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch.nn as nn
from torch.utils.data import DataLoader

from .._io import FolderLock
from .._progress import progress as show_progress
from ..data.features import feature_format
from ..data.inputs import VideoItem
from ..data.shards import ShardSet
from ..deploy.onnx_runtime import INT8_RECIPE, tensor_sha256
from ..deploy.optimize import resolve_runtime
from ..deploy.placement import INT8
from ..models import ClipSpec
from ..video.reader import DecodeOptions, check_decoder, renamed
from .config import ENGINES, ExtractConfig, InferenceOptions
from .features import (
    ExtractSummary,
    FeatureRunner,
    FolderWriter,
    calibration_frames,
    check_int8_agreement,
    check_settings,
    extraction_settings,
    int8_agreement,
    stage_index,
    this_jobs_part,
)

_logger = logging.getLogger(__name__)


def run_extraction(
    videos: Union[Sequence[VideoItem], ShardSet],
    out_dir: Union[str, os.PathLike],
    model: nn.Module,
    cfg: ExtractConfig,
    *,
    decode: DecodeOptions = DecodeOptions(),
    inference: Optional[InferenceOptions] = None,
    workers: int = 0,
    format: str = "npy",
    dtype: str = "float32",
    shard_id: int = 0,
    num_shards: int = 1,
    resume: bool = True,
    progress: bool = True,
    model_name: Optional[str] = None,
    init_seed: Optional[int] = None,
    calibration_clips: int = 32,
    force_int8: bool = False,
    engine: str = "local",
    address: Optional[str] = None,
    **legacy: Any,
) -> ExtractSummary:
    """Extract features of ``videos[shard_id::num_shards]`` into ``out_dir`` (see the module docstring). ``videos``
    may be WebDataset shards: this job then takes ``shards[shard_id::num_shards]`` and names outputs by sample key.
    ``decode`` says how videos are decoded, ``inference`` how the model runs (a runtime other than eager: see
    :func:`r21d_zoo.optimize_for_inference`). With ``amp="int8"`` the model is calibrated on ``calibration_clips``
    clips of the first videos (:func:`calibration_frames`) and checked on as many others against float32
    (:func:`int8_agreement`: printed and recorded in ``extraction.json``); too little agreement is refused before any
    features are written, unless ``force_int8``. ``engine="ray"`` runs decoding and the model as stages of a Ray
    Data pipeline on the cluster at ``address`` (default: ``RAY_ADDRESS``, else one started on this machine), writing
    the same folder (:mod:`r21d_zoo.infer.cluster`). The 0.x keywords (``decoder``, ``frames_fps``, ``device``, ``amp``,
    ``channels_last``, ``runtime``, ``optimize``) work, with a warning."""
    decode, inference = _legacy_options("run_extraction", decode, inference, legacy)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "ray":
        from .cluster import check_ray_options

        check_ray_options(inference)  # Ray installed, and what it cannot do refused, before any work
    spec = ClipSpec.from_model(model, **cfg.clip)
    _check_stage(model, cfg.layer)
    store_format = feature_format(format)
    check_decoder(decode.decoder)  # a decoder that cannot load here fails once, not once per video
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard id {shard_id} is not in 0..{num_shards - 1}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out, ".r21d-zoo.lock" if num_shards == 1 else f".r21d-zoo-shard-{shard_id}-of-{num_shards}.lock")
    with lock:  # a second live run of this shard into this folder is refused
        runner, quantization, agreement = None, None, None  # on Ray, the model actors make their own runners
        if engine == "local":
            runner, quantization, agreement = _runner_for(
                model, spec, cfg, inference, videos, decode, calibration_clips, force_int8, workers > 0
            )
        settings = extraction_settings(
            model, spec, cfg, format, dtype, model_name, init_seed, decode.frames_fps, quantization
        )
        if agreement is not None:
            settings["int8_agreement"] = agreement
        writer = FolderWriter(out, store_format.for_job(settings, shard_id, num_shards), cfg, dtype, model_name)
        writer.base.update(settings=check_settings(out, settings, resume), rank=shard_id, num_shards=num_shards)
        on_gpu = decode.decode_device(runner.device) if runner is not None else None
        if on_gpu is not None and workers:
            _logger.info("decoding with %s on %s in the main process (not in %d workers)", decode.decoder, on_gpu,
                         workers)
            workers = 0
        part = this_jobs_part(videos, writer, shard_id, num_shards, resume)
        bar = show_progress(total=part.total, unit="video", desc="extract", show=progress)
        if engine == "ray":
            from .cluster import extract_on_ray

            return extract_on_ray(part, spec, cfg, decode, inference, model, writer, bar, address)
        loader = DataLoader(
            part.chunks(spec, cfg, decode, on_gpu),
            batch_size=None,
            num_workers=workers,
            pin_memory=runner.device.type == "cuda" and on_gpu is None,
            prefetch_factor=2 if workers else None,
        )
        return writer.run(loader, runner, bar)


def _legacy_options(
    function: str, decode: DecodeOptions, inference: Optional[InferenceOptions], legacy: Dict[str, Any]
) -> Tuple[DecodeOptions, InferenceOptions]:
    """The carriers, with the 0.x keywords of ``function`` (each warned about) folded in."""
    unknown = set(legacy) - {"decoder", "frames_fps", "device", "amp", "channels_last", "runtime", "optimize"}
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    decoding = {k: legacy.pop(k) for k in ("decoder", "frames_fps") if legacy.get(k) is not None}
    for k in decoding:
        renamed(function, k, decoding[k], "decode", None)
    return replace(decode, **decoding), InferenceOptions.from_legacy(function, inference, legacy)


def _runner_for(
    model: nn.Module,
    spec: ClipSpec,
    cfg: ExtractConfig,
    inference: InferenceOptions,
    videos: Union[Sequence[VideoItem], ShardSet],
    decode: DecodeOptions,
    calibration_clips: int,
    force_int8: bool,
    beside_decoders: bool,
) -> Tuple[FeatureRunner, Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """The runner, and for int8 what it was calibrated on and how well it agrees with float32 (checked here)."""
    if inference.amp != INT8:
        return FeatureRunner(model, spec, cfg, inference, beside_decoders=beside_decoders), None, None
    reference = FeatureRunner(model, spec, cfg, replace(inference, amp="none", runtime="eager"))
    resolve_runtime(inference.runtime, reference.device, inference.amp)  # an impossible choice fails before decoding
    frames, names = calibration_frames(videos, spec, cfg, calibration_clips, decode)
    calibration = reference.clips(frames[0::2]).cpu()
    clips = dict(videos=names, clips=len(calibration), sha256=tensor_sha256(calibration))
    runner = FeatureRunner(model, spec, cfg, inference, calibration)
    agreement = int8_agreement(model, reference, runner, frames[1::2])
    check_int8_agreement(agreement, force_int8)
    return runner, dict(dtype=INT8, recipe=INT8_RECIPE, calibration=clips), agreement


def _check_stage(model: nn.Module, layer: Union[str, int]) -> None:
    """Fail before any decoding when the layer does not exist."""
    if layer not in ("pre_logits", "logits"):
        stage_index(model, layer, also=("pre_logits", "logits"))
