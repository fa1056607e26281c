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

import logging
from typing import List, Union


from .._errors import EXIT_PARTIAL, InputError
from .._io import writable_dir
from ..data.features import MANIFEST_FILE
from ..data.inputs import VideoItem, discover_videos, read_video_list, resolved
from ..data.labelled import video_items
from ..data.shards import ShardSet, shard_inputs
from ..train.distributed import all_reduce_sum, default_device, init_distributed, world_info_from_env
from ..video.reader import (
    FRAMES_DECODER,
    check_decoder,
)
from .configs import ExtractJobConfig as ExtractJobConfig
from ..infer.features import run_extraction

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Features of a batch of clips


# ---------------------------------------------------------------------------------------------------------------------
# Decoding in workers


# ---------------------------------------------------------------------------------------------------------------------
# int8: calibrated on the user's videos, checked against float32


# ---------------------------------------------------------------------------------------------------------------------
# The manifest


# ---------------------------------------------------------------------------------------------------------------------
# The batch job


# ---------------------------------------------------------------------------------------------------------------------
# The command


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
