"""``r21d-zoo shards pack|stats|subset``: the shard tools of :mod:`r21d_zoo.data.shards` on the command line."""

import json
import sys
from pathlib import Path
from typing import Sequence

from .._errors import EXIT_PARTIAL, InputError
from .._io import atomic_write, writable_file
from ..data.shards import (
    is_selected,
    iter_metadata,
    label_stats,
    open_shards,
    pack_shards,
    read_key_list,
    tail_preserving_subset,
)
from .configs import PackConfig as PackConfig, StatsConfig as StatsConfig, SubsetConfig as SubsetConfig


def run_pack(cfg: PackConfig) -> int:
    data = cfg.labels.read(cfg.source)
    segments = [s.path for s in data.samples if s.segment]
    if segments:
        raise InputError(
            f"{cfg.source}: {len(segments)} sample(s) are segments of longer videos (e.g. {segments[0]}); shards hold "
            f"whole videos: trim the segments into files first and pack those"
        )
    folders = [s.path for s in data.samples if Path(s.path).is_dir()]
    if folders:
        raise InputError(
            f"{cfg.source}: {len(folders)} sample(s) are frame folders (e.g. {folders[0]}); shards hold encoded "
            f"videos: encode the frames into video files first (ffmpeg -framerate FPS -i img_%05d.jpg video.mp4)"
        )
    missing = [s.path for s in data.samples if not Path(s.path).is_file()]
    if missing:
        raise InputError(f"{len(missing)} listed video(s) do not exist, e.g. {missing[0]}; fix the list first")
    index = pack_shards(data, cfg.out, cfg.shard_mb, cfg.max_per_shard)
    print(f"{cfg.out}: {index['total']} videos in {len(index['shards'])} shard(s), {len(index['classes'])} classes")
    skipped = index.get("skipped", [])
    for s in skipped[:10]:
        print(f"  left out: {s['error']}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} file(s) with no decodable video left out (listed in {cfg.out}/index.json)")
    return EXIT_PARTIAL if skipped else 0


def run_stats(cfg: StatsConfig) -> int:
    if cfg.out:
        writable_file(cfg.out, "-o")
    stats = label_stats(open_shards(cfg.shards), read_key_list(cfg.include), read_key_list(cfg.exclude))
    if cfg.out:
        atomic_write(Path(cfg.out), lambda f: f.write((json.dumps(stats, indent=2) + "\n").encode()))
    counts = list(stats["label_counts"].values())
    print(
        f"{stats['videos']} videos, {stats['labels']} labels ({stats['multilabel_videos']} multi-label videos); "
        f"videos per label: max {max(counts, default=0)}, median {sorted(counts)[len(counts) // 2] if counts else 0}, "
        f"min {min(counts, default=0)}"
    )
    for name, achieved in stats["sampling"].items():
        worst = achieved["worst_label"]
        shares = achieved["shares"][worst]
        print(
            f"{name} sampling: label shares within {100 * achieved['worst_relative_error']:.2g}% of their targets "
            f"(furthest: {worst}, {shares['achieved']:.4f} for {shares['target']:.4f})"
        )
    return _partial(stats["unreadable"])


def _partial(failures: Sequence[str]) -> int:
    """The exit code of a pass over shards: partial when damaged shard data was left out (each was logged)."""
    if failures:
        print(f"{len(failures)} damaged shard(s) or sample(s) left out, e.g. {failures[0]}", file=sys.stderr)
    return EXIT_PARTIAL if failures else 0


def run_subset(cfg: SubsetConfig) -> int:
    writable_file(cfg.out, "-o")
    exclude, failures = read_key_list(cfg.exclude), []
    metadata = iter_metadata(open_shards(cfg.shards).urls, failures)
    samples = [(key, labels) for key, labels in metadata if is_selected(key, None, exclude)]
    keys = tail_preserving_subset(samples, cfg.n, cfg.seed)
    atomic_write(Path(cfg.out), lambda f: f.write(("\n".join(sorted(keys)) + "\n").encode()))
    print(f"{cfg.out}: {len(keys)} of {len(samples)} videos")
    return _partial([message for _, message in failures])
