"""Streaming loader vs model: can WebDataset shards, decoded in memory by 2 DataLoader workers, feed training?

Packs synthetic H.264 videos into shards, then measures in one run (a) the loader alone: clips per second out of
``DataLoader(ShardStream(...), num_workers=2)`` for 8-frame clips resized to 128x171 (the 112 crop happens in the
step), and (b) the model alone: clips per second of an R(2+1)D-18 training step (forward, backward, SGD) on
8x112x112 clips. ratio = loader / model: at or above 1 the loader keeps up (on a GPU the model side is far faster, so
run this there to size the worker count).

    python bench/bench_shards.py [--videos 48] [--workers 2] [--device cuda]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from _common import machine, print_table, write_json  # noqa: E402
from util import make_video  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo.data.labelled import LabelledVideos, Sample  # noqa: E402
from r21d_zoo.data.shards import ShardStream, open_shards, pack_shards  # noqa: E402
from r21d_zoo.models import ClipSpec  # noqa: E402


def loader_rate(shards, spec: ClipSpec, workers: int, batch: int) -> float:
    loader = DataLoader(ShardStream(shards, spec), batch_size=batch, num_workers=workers)
    it = iter(loader)
    next(it)  # workers started, first shard opened
    start, clips = time.perf_counter(), 0
    for clip, *_ in it:
        clips += len(clip)
    return clips / (time.perf_counter() - start)


def model_rate(device: str, batch: int, steps: int) -> float:
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=10).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 8, 112, 112, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="bench/results/shards.json")
    args = parser.parse_args()
    spec = ClipSpec(num_frames=8)  # resize 128x171, crop 112 in the step
    with tempfile.TemporaryDirectory() as tmp:
        samples = [
            Sample(str(make_video(Path(tmp) / f"v{i}.mp4", num_frames=60, size=(240, 320), fps=30)), (i % 5,))
            for i in range(args.videos)
        ]
        pack_shards(LabelledVideos(samples, [f"c{i}" for i in range(5)]), f"{tmp}/shards", max_per_shard=8)
        loader = loader_rate(open_shards(f"{tmp}/shards"), spec, args.workers, args.batch)
    model = model_rate(args.device, args.batch, args.steps)
    rows = [
        dict(
            measurement=f"8x112x112 clips/s, 320x240 H.264 from shards, {args.workers} workers; R(2+1)D-18 step on "
            f"{args.device}",
            ours=f"loader {loader:.1f} clips/s",
            baseline=f"model {model:.1f} clips/s",
            ratio=f"{loader / model:.2f}",
        )
    ]
    print_table(rows, ["measurement", "ours", "baseline", "ratio"])
    write_json(args.json, dict(machine=machine(), loader_clips_per_s=loader, model_clips_per_s=model, rows=rows))


if __name__ == "__main__":
    main()
