"""``predict --live`` against real time: a synthetic 320x240 30 fps stream served over TCP on 127.0.0.1 at real time,
classified by a ladder of models at their default stride (back to back windows): windows answered per second against
the stream's windows per second, the share skipped to keep up, and the latency from a window's last frame to its
answer. The largest model that keeps up (no window skipped) is the answer for this machine. Prints the table and
writes ``bench/results/live_cpu.json`` (or ``live_gpu.json`` on a GPU).

    python bench/bench_live.py                 # 20 s of stream per model
"""

import argparse
import multiprocessing
import socket
import sys
import time
from pathlib import Path
from typing import Dict

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo.infer.config import InferenceOptions  # noqa: E402
from r21d_zoo.infer.live import LiveSummary, live_windows  # noqa: E402
from r21d_zoo.video.writer import stream_video  # noqa: E402

LADDER = (
    "r2plus1d_18.kinetics400_8f",
    "r2plus1d_18.tv_kinetics400_16f",
    "r2plus1d_34.ig65m_ft_kinetics400_8f",
    "r2plus1d_34.ig65m_ft_kinetics400_32f",  # predict's default
)


def frames(seconds: float):
    yy, xx = np.mgrid[0:240, 0:320]
    for i in range(int(seconds * 30)):
        yield np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, 90)], -1).astype(np.uint8)


def serve(started, url: str, seconds: float) -> None:
    started.set()
    stream_video(url, frames(seconds), 30)


def run(name: str, seconds: float, device: str, runtime: str = "auto") -> Dict[str, object]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # spawned: a fork of this process, its threads from the previous run, could inherit a held lock
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    server = context.Process(target=serve, args=(started, f"tcp://127.0.0.1:{port}?listen=1", seconds), daemon=True)
    server.start()
    started.wait(60)
    time.sleep(0.5)  # listening
    torch.manual_seed(0)
    model = r21d_zoo.create_model(name, pretrained=False).eval()
    summary = LiveSummary()
    answered = []
    inference = InferenceOptions(device, runtime=runtime)
    for w in live_windows(model, f"tcp://127.0.0.1:{port}", inference=inference, reconnect=0,
                          summary=summary):  # fmt: skip
        answered.append(w)
    server.join(10)
    length = answered[0].end - answered[0].start
    total = summary.windows + summary.skipped
    lat = np.array(summary.latencies)
    return dict(
        model=name,
        window_s=round(length, 3),
        stream_windows_per_s=round(1 / length, 2),
        answered_per_s=round(summary.windows / seconds, 2),
        skipped=f"{summary.skipped}/{total}",
        latency_median_s=round(float(np.median(lat)), 3),
        latency_p95_s=round(float(np.percentile(lat, 95)), 3),
        model_s=round(float(np.median([w.model_seconds for w in answered])), 3),
        keeps_up="yes" if summary.skipped == 0 else "no",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--runtime", default="auto", help="predict's --runtime (default auto, as predict)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = [run(name, args.seconds, device, args.runtime) for name in LADDER]
    print()
    columns = ["model", "window_s", "stream_windows_per_s", "answered_per_s", "skipped", "latency_median_s",
               "latency_p95_s", "model_s", "keeps_up"]  # fmt: skip
    table = print_table(rows, columns)
    keeping = [r["model"] for r in rows if r["keeps_up"] == "yes"]
    largest = keeping[-1] if keeping else "none of them"
    print(f"\nthe largest model that keeps up at its default stride here: {largest}")
    described = (
        f"{args.seconds:g} s of a 320x240 30 fps stream over TCP on 127.0.0.1, paced at real time, on {device}, "
        f"runtime {args.runtime}; "
        f"windows back to back at each model's clip length; the largest model that keeps up: {largest}"
    )
    write_json(args.json or f"bench/results/live_{device if device == 'cpu' else 'gpu'}.json",
               dict(rows=rows, markdown=table, described=described, largest=largest))


if __name__ == "__main__":
    main()
