"""End-to-end extraction with no ``--runtime`` (the default, ``auto``: ``r21d_zoo.deploy.choice``) against each
runtime forced, with a decoding worker, on the same videos in the same run: how close the default comes to the
fastest runtime where decoding shares the cores with the model, what the first run spends choosing, and that a
second run reads the choice back instead of measuring again; beside it, each runtime's model-only time for the same
clips (frames in memory) and the share of the fastest model-only throughput each end-to-end run reaches
(``of_model_only``). Prints the table and writes ``bench/results/auto_cpu.json``.

    python bench/bench_auto.py                       # R(2+1)D-18 and ir-CSN-152, 8 videos, 1 worker
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

import r21d_zoo  # noqa: E402
import r21d_zoo.deploy.choice as choice  # noqa: E402
from r21d_zoo.data.inputs import VideoItem  # noqa: E402
from r21d_zoo.data.labelled import read_labelled  # noqa: E402
from r21d_zoo.data.synthetic import make_motion_dataset  # noqa: E402
from r21d_zoo.infer.config import ExtractConfig, InferenceOptions  # noqa: E402
from r21d_zoo.infer.extraction import run_extraction  # noqa: E402
from r21d_zoo.infer.features import ClipChunks, FeatureRunner  # noqa: E402
from r21d_zoo.models import ClipSpec  # noqa: E402

FORCED = ("eager", "torch", "onnxruntime")


def rows_for(name: str, items: List[VideoItem], tmp: Path, workers: int, repeats: int) -> List[Dict[str, object]]:
    torch.manual_seed(0)
    torch.hub.set_dir(str(tmp / name / "hub"))  # a cache of choices and graphs of its own: the first run chooses
    model = r21d_zoo.create_model(name).eval()
    model.pretrained_cfg.update(num_frames=8, resize_size=(128, 171), crop_size=112)
    cfg = ExtractConfig(batch_size=4)
    measured: List[List[str]] = []
    clips: List[int] = []
    real = choice.measure

    def counting(*args, **kwargs):
        measured.append(list(args[4]))
        return real(*args, **kwargs)

    choice.measure = counting

    def run(runtime: str) -> float:
        forced = {} if runtime == "default" else dict(runtime=runtime)
        inference = InferenceOptions("cpu", "none", **forced)
        summary = run_extraction(items, tmp / f"{name}-{runtime}", model, cfg, inference=inference, workers=workers,
                                 resume=False, progress=False)  # fmt: skip
        clips.append(summary.clips)
        return summary.seconds

    first = run("default")  # chooses: times the candidates on clips as the runner makes them, once
    chose = [r["runtime"] for r in json.loads(choice.default_choice_file().read_text()).values()]
    measured_first = len(measured)
    seconds: Dict[str, List[float]] = {k: [] for k in (*FORCED, "default")}
    for i in range(repeats + 1):  # the first round exports and traces (cached): not timed
        for k in seconds:
            s = run(k)
            if i:
                seconds[k].append(s)
    choice.measure = real
    again = len(measured) - measured_first  # the default's later runs: read back, not measured
    med = {k: sorted(v)[len(v) // 2] for k, v in seconds.items()}
    fastest = min(FORCED, key=med.get)
    alone = model_only(model, clips[0], cfg)
    decoding = decode_only(items, model, cfg, workers)
    best_alone = min(alone.values())  # the fastest runtime's model-only time for the same clips
    rows = [dict(model=name, runtime=k, e2e_s=round(med[k], 3), vs_fastest=round(med[k] / med[fastest], 3),
                 model_only_s=round(alone[k], 3), of_model_only=round(best_alone / med[k], 3), note="")
            for k in FORCED]  # fmt: skip
    rows.append(dict(model=name, runtime=f"default (auto -> {'/'.join(chose)})", e2e_s=round(med["default"], 3),
                     vs_fastest=round(med["default"] / med[fastest], 3), model_only_s="",
                     of_model_only=round(best_alone / med["default"], 3),
                     note=f"first run {first:.1f} s, timing {', '.join(measured[-1])}; later runs measured again: "
                     f"{again}; decoding alone {decoding:.2f} s"))  # fmt: skip
    return rows


def decode_only(items: List[VideoItem], model: torch.nn.Module, cfg: ExtractConfig, workers: int) -> float:
    """Seconds the decoding workers take to hand over every chunk with no model behind them."""
    loader = DataLoader(ClipChunks(items, ClipSpec.from_model(model), cfg), batch_size=None, num_workers=workers,
                        prefetch_factor=2 if workers else None)  # fmt: skip
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def model_only(model: torch.nn.Module, clips: int, cfg: ExtractConfig, repeats: int = 3) -> Dict[str, float]:
    """Seconds each runtime's runner takes for ``clips`` clips of resized frames already in memory (no decoding):
    the median of ``repeats`` passes after a warm-up call."""
    spec = ClipSpec.from_model(model)
    frames = torch.randint(0, 255, (cfg.batch_size, spec.num_frames, *spec.resize_size, 3), dtype=torch.uint8)
    batches = -(-clips // cfg.batch_size)
    out = {}
    for k in FORCED:
        runner = FeatureRunner(model, spec, cfg, InferenceOptions("cpu", "none", k))
        runner(frames)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(batches):
                runner(frames)
            times.append(time.perf_counter() - start)
        out[k] = sorted(times)[len(times) // 2]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["r2plus1d_18", "ir_csn_152"])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64, help="frames per video (8 per clip)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="the model's intra-op threads (default: torch's)")
    parser.add_argument("--json", default="bench/results/auto_cpu.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["TORCH_HOME"] = str(tmp / "torch")
        _, val = make_motion_dataset(tmp / "v", videos_per_class=0, val_per_class=args.videos // 4,
                                     num_frames=args.frames, size=256, directions=("left", "right", "up", "down"))
        items = [VideoItem(s.path, f"v{i}") for i, s in enumerate(read_labelled(val).samples)]
        for name in args.models:
            rows += rows_for(name, items, tmp, args.workers, args.repeats)
            print(rows[-1], flush=True)
    table = print_table(rows, ["model", "runtime", "e2e_s", "vs_fastest", "model_only_s", "of_model_only", "note"])
    write_json(args.json, dict(markdown=table, videos=args.videos, frames=args.frames, workers=args.workers,
                               model_threads=torch.get_num_threads()))  # fmt: skip


if __name__ == "__main__":
    main()
