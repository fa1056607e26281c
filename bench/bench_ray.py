"""``extract --engine ray`` on a two-node local Ray cluster (head + one worker node, one CPU each) against one process
with a decoding worker (``--engine local --workers 1``), on the same videos in the same run, for a model-bound and a
decode-bound case: throughput ratio and how busy each Ray stage was (average busy workers: decode tasks, model
actors). Prints the table and writes ``bench/results/ray_cpu.json``.

    python bench/bench_ray.py     # 8 videos of 6 s: R(2+1)D-18 on 320x240, R(2+1)D-18 at 1/4 width on 1280x720
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo.data.inputs import VideoItem  # noqa: E402
from r21d_zoo.infer.config import ExtractConfig  # noqa: E402
from r21d_zoo.infer.extraction import run_extraction  # noqa: E402
from r21d_zoo.video import write_video  # noqa: E402


def videos(root: Path, count: int, seconds: float, size: Tuple[int, int]) -> List[VideoItem]:
    """Moving gradients of ``size`` (h, w) at 30 fps (libx264)."""
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    root.mkdir()
    items = []
    for v in range(count):
        frames = (
            np.stack([(xx + 5 * i + 17 * v) % 256, (yy + 3 * i) % 256, np.full_like(xx, 64 + v)], -1).astype(np.uint8)
            for i in range(int(seconds * 30))
        )
        write_video(root / f"v{v}.mp4", frames, 30)
        items.append(VideoItem(str(root / f"v{v}.mp4"), f"v{v}"))
    return items


def measure(label: str, model: torch.nn.Module, items: List[VideoItem], tmp: Path, address: str) -> Dict[str, object]:
    cfg = ExtractConfig(batch_size=4)
    t = time.perf_counter()
    local = run_extraction(items, tmp / f"{label}-local", model, cfg, workers=1, resume=False, progress=False)
    t_local = time.perf_counter() - t
    t = time.perf_counter()
    ray = run_extraction(items, tmp / f"{label}-ray", model, cfg, resume=False, progress=False, engine="ray",
                         address=address)  # fmt: skip
    t_ray = time.perf_counter() - t
    assert local.done == ray.done == len(items) and local.clips == ray.clips, (local, ray)
    busy = {k: v["busy_workers"] for k, v in ray.busy.items()}
    return dict(
        case=label,
        clips=local.clips,
        local_clips_per_s=round(local.clips / t_local, 2),
        ray_clips_per_s=round(ray.clips / t_ray, 2),
        ratio=round(t_local / t_ray, 3),
        decode_busy=busy["decode"],
        model_busy=busy["model"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--json", default="bench/results/ray_cpu.json")
    args = parser.parse_args()
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    from ray.cluster_utils import Cluster

    torch.manual_seed(0)
    full = r21d_zoo.create_model("r2plus1d_18.tv_kinetics400_16f", pretrained=False).eval()
    narrow = r21d_zoo.create_model("r2plus1d_18", channel_multiplier=0.25, num_classes=400).eval()
    narrow.pretrained_cfg = full.pretrained_cfg
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False))
    cluster.add_node(num_cpus=1)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cases = (
                ("R(2+1)D-18 on 320x240 videos", full, (240, 320)),
                ("R(2+1)D-18 at 1/4 width on 1280x720 videos", narrow, (720, 1280)),
            )
            for k, (label, model, size) in enumerate(cases):
                items = videos(Path(tmp) / f"videos{k}", args.videos, args.seconds, size)
                rows.append(measure(label, model, items, Path(tmp), cluster.address))
    finally:
        cluster.shutdown()
    print()
    columns = ["case", "clips", "local_clips_per_s", "ray_clips_per_s", "ratio", "decode_busy", "model_busy"]
    table = print_table(rows, columns)
    described = (
        f"{os.cpu_count()} cores; one process: 1 decoding worker + the model at torch's default threads; Ray: two "
        f"local nodes of 1 CPU each (1 model actor of 1 thread, decode tasks of 1 CPU); {args.videos} videos of "
        f"{args.seconds:g} s at 30 fps each; ratio = local time / Ray time (above 1: Ray faster), starting the actors "
        "included; busy = average busy workers of the stage"
    )
    write_json(args.json, dict(rows=rows, markdown=table, described=described))


if __name__ == "__main__":
    main()
