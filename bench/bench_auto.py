"""End-to-end extraction under each runtime and under ``--runtime auto`` (measured, ``r21d_zoo.deploy.choice``), with
a decoding worker, on the same videos in the same run: how close auto comes to the fastest runtime end to end, where
decoding shares the cores with the model. Prints the table and writes ``bench/results/auto_cpu.json``.

    python bench/bench_auto.py                       # R(2+1)D-18 and ir-CSN-152, 8 videos, 1 worker
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo.data.inputs import VideoItem  # noqa: E402
from r21d_zoo.data.labelled import read_labelled  # noqa: E402
from r21d_zoo.data.synthetic import make_motion_dataset  # noqa: E402
from r21d_zoo.deploy.choice import choose_runtime  # noqa: E402
from r21d_zoo.infer.config import ExtractConfig, InferenceOptions  # noqa: E402
from r21d_zoo.infer.extraction import run_extraction  # noqa: E402


def rows_for(name: str, items: List[VideoItem], tmp: Path, workers: int, repeats: int) -> List[Dict[str, object]]:
    torch.manual_seed(0)
    model = r21d_zoo.create_model(name).eval()
    model.pretrained_cfg.update(num_frames=8, resize_size=(128, 171), crop_size=112)
    cfg = ExtractConfig(batch_size=4)
    cache = tmp / f"{name}-choice.json"
    t0 = time.perf_counter()
    chosen, record = choose_runtime(model, (4, 3, 8, 112, 112), "none", "cpu", cache)
    measuring = time.perf_counter() - t0
    runs = {k: k for k in ("eager", "torch", "onnxruntime")}
    seconds: Dict[str, List[float]] = {k: [] for k in runs}
    for i in range(repeats + 1):  # the first round exports and traces (cached): not timed
        for k in runs:
            inference = InferenceOptions("cpu", "none", k)
            summary = run_extraction(items, tmp / f"{name}-{k}", model, cfg, inference=inference, workers=workers,
                                     resume=False, progress=False)  # fmt: skip
            if i:
                seconds[k].append(summary.seconds)
    med = {k: sorted(v)[len(v) // 2] for k, v in seconds.items()}
    fastest = min(med, key=med.get)
    rows = [dict(model=name, runtime=k, e2e_s=round(med[k], 3), vs_fastest=round(med[k] / med[fastest], 3),
                 auto_takes="<-" if k == chosen else "") for k in runs]  # fmt: skip
    rows.append(dict(model=name, runtime=f"auto -> {chosen}", e2e_s=round(med[chosen], 3),
                     vs_fastest=round(med[chosen] / med[fastest], 3),
                     auto_takes=f"measured model-only once in {measuring:.1f} s"))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["r2plus1d_18", "ir_csn_152"])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="the model's intra-op threads (default: torch's)")
    parser.add_argument("--json", default="bench/results/auto_cpu.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _, val = make_motion_dataset(tmp / "v", videos_per_class=0, val_per_class=args.videos // 4, num_frames=32,
                                     size=128, directions=("left", "right", "up", "down"))  # fmt: skip
        items = [VideoItem(s.path, f"v{i}") for i, s in enumerate(read_labelled(val).samples)]
        for name in args.models:
            rows += rows_for(name, items, tmp, args.workers, args.repeats)
            print(rows[-1], flush=True)
    table = print_table(rows, ["model", "runtime", "e2e_s", "vs_fastest", "auto_takes"])
    write_json(args.json, dict(markdown=table, videos=args.videos, workers=args.workers,
                               model_threads=torch.get_num_threads()))  # fmt: skip


if __name__ == "__main__":
    main()
