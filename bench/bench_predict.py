"""Peak memory of ``predict`` on a long video: the process's resident memory (PSS, torch import included) while it
scores a 10-minute 640x360 30 fps video (the video-level clips and a timeline window every second), against the same
run on a 1-minute video (a ratio near 1: memory does not grow with the video's length) and against the whole video
held as uint8. R(2+1)D-18's blocks at 1/4 width with random weights, so the run takes minutes on a CPU (memory does
not depend on the weights; the clips decoded and held are the full model's). Checks that progress was reported.

    python bench/bench_predict.py                 # writes bench/results/predict_<cpu|cuda>.json
    python bench/bench_predict.py --minutes 2     # quicker
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS, print_table, write_json  # noqa: E402
from bench_extract import long_video  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo.infer.timeline import predict  # noqa: E402

LIMIT_MB = 2048


class Progress(logging.Handler):
    """The progress lines predict logs (they go to the log when stderr is not a terminal)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "r21d_zoo.progress":
            self.lines.append(record.getMessage())


def run(video: Path, model: torch.nn.Module) -> dict:
    handler = Progress()
    logging.getLogger("r21d_zoo.progress").addHandler(handler)
    logging.getLogger("r21d_zoo.progress").setLevel(logging.INFO)
    with PeakRSS() as rss:
        t = time.perf_counter()
        p = predict(model, str(video), stride_sec=1.0, progress=True)
        seconds = time.perf_counter() - t
    logging.getLogger("r21d_zoo.progress").removeHandler(handler)
    return dict(peak_rss_mb=rss.peak / 2**20, seconds=seconds, windows=len(p.timeline), progress_lines=handler.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    full = r21d_zoo.create_model("r2plus1d_18.tv_kinetics400_16f", pretrained=False)
    model = r21d_zoo.create_model("r2plus1d_18", channel_multiplier=0.25, num_classes=400).eval()
    model.pretrained_cfg = dict(full.pretrained_cfg)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (1.0, args.minutes):
            t = time.perf_counter()
            video = long_video(Path(tmp) / f"{minutes:g}min.mp4", minutes * 60)
            print(f"wrote a {minutes:g}-minute 640x360 video in {time.perf_counter() - t:.0f} s")
            results[f"{minutes:g}min"] = r = run(video, model)
            print(f"{minutes:g} min: peak {r['peak_rss_mb']:.0f} MB, {r['windows']} windows in {r['seconds']:.0f} s, "
                  f"{len(r['progress_lines'])} progress lines, last: {r['progress_lines'][-1:]}")
        short, long = results["1min"], results[f"{args.minutes:g}min"]
        whole = args.minutes * 60 * 30 * 360 * 640 * 3 / 2**20
        rows.append(dict(
            measurement=f"predict, peak RSS on a {args.minutes:g}-min 640x360 30 fps video ({long['windows']} windows, "
                        f"{long['seconds']:.0f} s)",
            ours=f"{long['peak_rss_mb']:.0f} MB", baseline=f"1-min video: {short['peak_rss_mb']:.0f} MB",
            ratio=f"{long['peak_rss_mb'] / short['peak_rss_mb']:.3f}",
        ))  # fmt: skip
        rows.append(dict(
            measurement="the same, against the whole video as uint8", ours=f"{long['peak_rss_mb']:.0f} MB",
            baseline=f"{whole:.0f} MB", ratio=f"{long['peak_rss_mb'] / whole:.4f}",
        ))  # fmt: skip
    print()
    table = print_table(rows, ["measurement", "ours", "baseline", "ratio"])
    write_json(args.json or f"bench/results/predict_{'cuda' if torch.cuda.is_available() else 'cpu'}.json",
               dict(results=results, table=table))  # fmt: skip
    assert long["peak_rss_mb"] < LIMIT_MB, f"peak RSS {long['peak_rss_mb']:.0f} MB is over {LIMIT_MB} MB"
    assert len(long["progress_lines"]) >= 2, "predict reported no progress"


if __name__ == "__main__":
    main()
