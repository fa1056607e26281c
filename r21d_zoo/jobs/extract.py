"""``r21d-zoo extract``: the videos, files, lists, shards or a labelled dataset's samples to extract, this job's
shard, and the model, handed to :func:`r21d_zoo.infer.extraction.run_extraction` (which documents the folder it
writes)."""

import logging
from typing import List, Union

from .._errors import EXIT_PARTIAL, InputError
from .._io import writable_dir
from .._world import array_task_from_env
from ..data.features import MANIFEST_FILE
from ..data.inputs import VideoItem, discover_videos, read_video_list, resolved
from ..data.labelled import video_items
from ..data.shards import ShardSet, shard_inputs
from ..infer.config import InferenceOptions
from ..infer.extraction import run_extraction
from ..train.distributed import all_reduce_sum, default_device, init_distributed, world_info_from_env
from ..video.reader import FRAMES_DECODER, DecodeOptions, check_decoder
from .configs import ExtractJobConfig as ExtractJobConfig

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# The command


def run(cfg: ExtractJobConfig) -> int:
    """``r21d-zoo extract``: exit 1 when any video failed (on any rank), 3 when the model, the inputs or the decoder
    are unusable (refused before any work)."""
    check_decoder(cfg.decoder)
    if cfg.engine == "ray":
        from ..infer.cluster import check_ray_options

        check_ray_options(InferenceOptions(cfg.device, cfg.amp))
    if bool(cfg.inputs) == bool(cfg.data):
        raise InputError("give the videos to extract (files, folders, lists, shards) or --data DATASET, one of the two")
    exclude = cfg.labels.exclude
    if cfg.data:
        data = cfg.labels.read(cfg.data, subset="all")  # every video of a split folder; --exclude applied
        videos: Union[List[VideoItem], ShardSet] = video_items(data)
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
    else:  # torchrun's or srun's ranks, within this task of a SLURM job array if it is one
        world = init_distributed(world)
        task, tasks = array_task_from_env() or (0, 1)
        shard_id, num_shards = task * world.world_size + world.rank, tasks * world.world_size
        if tasks > 1:
            _logger.info("SLURM array task %d of %d: shard %d of %d", task, tasks, shard_id, num_shards)
    seed = cfg.seed if cfg.model.random else None
    model = cfg.model.create(seed=seed)
    summary = run_extraction(
        videos,
        cfg.out,
        model,
        cfg.settings,
        decode=DecodeOptions(cfg.decoder, cfg.labels.frames_fps),
        inference=InferenceOptions(
            cfg.device if cfg.engine == "ray" else default_device(world, cfg.device),  # Ray: the cluster's GPUs
            cfg.amp,
            cfg.runtime,
            cfg.channels_last,
        ),
        workers=cfg.workers,
        format=cfg.format,
        dtype=cfg.dtype,
        shard_id=shard_id,
        num_shards=num_shards,
        resume=not cfg.overwrite,
        progress=shard_id == 0,
        model_name=cfg.model.name,
        init_seed=seed,
        calibration_clips=cfg.calibration_clips,
        force_int8=cfg.force_int8,
        engine=cfg.engine,
        address=cfg.address,
    )
    failed = all_reduce_sum(summary.failed)
    print(
        f"shard {shard_id}/{num_shards}: {summary.done} extracted ({summary.clips} clips, "
        f"{summary.clips / max(summary.seconds, 1e-9):.1f} clips/s), {summary.skipped} already done, "
        f"{summary.failed} failed -> {cfg.out}/{MANIFEST_FILE}"
    )
    if summary.busy:
        busy = ", ".join(f"{k} {v['busy_workers']:.2f}" for k, v in summary.busy.items())
        print(f"busy workers per stage (on average): {busy}")
    return EXIT_PARTIAL if failed else 0
