"""Model-only speed of every architecture family x runtime x precision x batch, as timm's ``results/`` CSVs are:
``bench/results/families_<device>.csv`` (one row per setting, the machine in every row) and, beside it, a JSON with
the Markdown table the docs' performance page shows.

Each row: clips/s and ms per call (medians of calls interleaved across the runtimes of a model, so a change of load
hits them alike), the memory one call allocates at its peak (malloc in use above its level before the call), and the
output's largest difference from eager float32 relative to its largest magnitude. Weights are random (speed does not
depend on them); agreement is of logits. Clips are laid out as the transform hands them to the model (channels-last
strides from (T, H, W, C) frames). int8 is onnxruntime's static quantization calibrated on 8 random clips of the
row's shape. Run: ``python bench/bench_families.py`` (an 8x112² clip; ``--clips own --batches 1 --out
bench/results/families_own_clip_cpu.csv`` at each weight's own clip size; ``--models``, ``--repeats`` narrow it)."""

import argparse
import csv
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMalloc, interleaved_medians, print_table, write_json  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo import optimize_for_inference  # noqa: E402
from r21d_zoo.deploy.onnx_runtime import onnxruntime_available  # noqa: E402
from r21d_zoo.deploy.placement import Placement  # noqa: E402

FAMILIES = ["r2plus1d_18", "r2plus1d_34", "r2plus1d_152", "r3d_18", "mc3_18", "rmc3_18", "r2d_18", "fr2d_18",
            "ir_csn_152", "ip_csn_152"]  # fmt: skip
SMALL_CLIP = (8, 112)


def cpu_description() -> Dict[str, object]:
    """The CPU model, its cores and the instruction-set flags that decide these numbers, and the library versions."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "not installed"
    return dict(cpu=name, cores=os.cpu_count(), threads=torch.get_num_threads(),
                flags=" ".join(f for f in wanted if f in flags), torch=torch.__version__, onnxruntime=ort)  # fmt: skip


def runners(model: torch.nn.Module, device: torch.device, clip: tuple) -> Dict[str, object]:
    """(runtime, precision) -> a call on a clip batch, for every pair that can run on ``device``."""
    out = {}
    for amp in ("none", "bf16"):
        place = Placement.create(device, amp, None, model)
        eager = place.place(model)
        out[("eager", amp)] = (lambda x, e=eager, p=place: _under(p, e, x))
        out[("torch", amp)] = optimize_for_inference(model, amp=amp, runtime="torch")
    if device.type == "cpu" and onnxruntime_available():
        out[("onnxruntime", "none")] = optimize_for_inference(model, amp="none", runtime="onnxruntime")
        t, size = clip
        calibration = torch.randn(8, 3, t, size, size)
        out[("onnxruntime", "int8")] = optimize_for_inference(model, amp="int8", runtime="onnxruntime",
                                                              calibration=calibration)  # fmt: skip
    return out


def _under(place: Placement, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with place.autocast():
        return model(place.prepare(x)).float()


def rows_for(name: str, clip: tuple, batches: List[int], repeats: int, device: torch.device) -> List[Dict]:
    torch.manual_seed(0)
    t, size = clip
    extra = dict(num_frames=t) if name.startswith("r2d") else {}  # R2D's stem kernel spans the whole clip
    model = r21d_zoo.create_model(name, **extra).eval().to(device)
    rows = []
    with torch.inference_mode():
        calls = runners(model, device, clip)
        for batch in batches:
            x = torch.randn(batch, 3, t, size, size, device=device).contiguous(memory_format=torch.channels_last_3d)
            reference = model(x).float()
            fns = {k: (lambda f=f: f(x)) for k, f in calls.items()}
            seconds = interleaved_medians(fns, repeats=repeats, warmup=1)
            for (runtime, amp), f in calls.items():
                with PeakMalloc() as peak:
                    out = f(x).float()
                diff = ((out - reference).abs().max() / reference.abs().max()).item()
                rows.append(dict(model=name, clip=f"{t}x{size}x{size}", batch=batch, runtime=runtime,
                                 precision="float32" if amp == "none" else amp,
                                 ms=round(seconds[(runtime, amp)] * 1e3, 2),
                                 clips_s=round(batch / seconds[(runtime, amp)], 2),
                                 peak_mb=round(peak.peak / 2**20, 1), max_rel_diff=f"{diff:.1e}",
                                 device=device.type))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=FAMILIES)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", nargs="+", choices=("small", "own"), default=["small"],
                        help="small: 8x112x112; own: each weight's own clip size")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="default bench/results/families_<device>.csv")
    args = parser.parse_args()
    device = torch.device(args.device)
    out = Path(args.out or f"bench/results/families_{device.type}.csv")
    described = cpu_description()
    if device.type == "cuda":
        described["gpu"] = torch.cuda.get_device_name()
    rows: List[Dict] = []
    for name in args.models:
        clips = [SMALL_CLIP] if "small" in args.clips else []
        if "own" in args.clips:
            spec = r21d_zoo.ClipSpec.from_model(r21d_zoo.get_pretrained_cfg(name).to_dict())
            clips.append((spec.num_frames, spec.crop_size))
        for clip in dict.fromkeys(clips):
            new = rows_for(name, clip, args.batches, args.repeats, device)
            for row in new:
                print(row, flush=True)
            rows += new
    for row in rows:
        row.update(described)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.chmod(f.name, 0o644)
    os.replace(f.name, out)
    shown = ["model", "clip", "batch", "runtime", "precision", "ms", "clips_s", "peak_mb", "max_rel_diff"]
    table = print_table(rows, shown)
    write_json(str(out.with_suffix(".json")), dict(markdown=table, csv=out.name, described=described))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
