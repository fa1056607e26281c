"""Model speed and memory, always as a ratio against a baseline measured in the same process (interleaved runs):

1. our torchvision-compatible R(2+1)D-18 / R3D-18 / MC3-18 vs torchvision's, forward (inference mode) and
   forward+backward, same weights and input;
2. our R(2+1)D-18/34/152 eager vs ``optimize_for_inference``: BN folding + channels_last_3d, the CPU default
   (BN folding + TorchScript ``optimize_for_inference``), and torch.compile / bf16 autocast (GPU defaults; on CPU
   with --compile / --amp);
3. forward+backward peak memory of R(2+1)D-152 with and without gradient checkpointing.

    python bench/bench_models.py                       # CPU: writes bench/results/models_cpu.json
    python bench/bench_models.py --plot docs/bench_cpu.png   # also the chart (the docs table is built from the JSON)

Peak memory is ``torch.cuda.max_memory_allocated`` on GPU and, on CPU, the peak of the C allocator's in-use bytes
(glibc ``mallinfo2``, sampled every 2 ms) above the pre-run level.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torchvision.models.video as tvm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMalloc, interleaved_medians, print_table, write_json  # noqa: E402

import os  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo import optimize_for_inference  # noqa: E402

TV_PAIRS = {  # our arch.tag whose architecture args make it torchvision's network
    "r2plus1d_18": "r2plus1d_18.tv_kinetics400_16f",
    "r3d_18": "r3d_18.tv_kinetics400_16f",
    "mc3_18": "mc3_18.tv_kinetics400_16f",
}
MARK_START, MARK_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def peak_memory(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory in MB while running ``fn`` once, above what was allocated before."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with PeakMalloc() as mem:
        fn()
    return mem.peak / 2**20


def fwd(model, x) -> Callable[[], object]:
    def run():
        with torch.inference_mode():
            return model(x)

    return run


def fwd_bwd(model, x) -> Callable[[], object]:
    def run():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    return run


def vs_torchvision(device: torch.device, batch: int, frames: int, repeats: int) -> List[Dict[str, object]]:
    rows = []
    for arch, tag in TV_PAIRS.items():
        torch.manual_seed(0)
        ref = getattr(tvm, arch)().to(device)
        ours = r21d_zoo.create_model(tag, pretrained=False).to(device)
        ours.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(batch, 3, frames, 112, 112, device=device)
        for mode, make in (("forward", fwd), ("forward+backward", fwd_bwd)):
            for m in (ref, ours):
                m.train(mode != "forward")
            if mode == "forward":
                torch.testing.assert_close(make(ours, x)(), make(ref, x)(), rtol=1e-4, atol=1e-4)
            t = interleaved_medians(dict(tv=make(ref, x), ours=make(ours, x)), repeats=repeats)
            mem = {k: peak_memory(make(m, x), device) for k, m in (("tv", ref), ("ours", ours))}
            rows.append(
                dict(
                    model=arch,
                    mode=mode,
                    input=f"{batch}x3x{frames}x112x112",
                    torchvision_clips_s=round(batch / t["tv"], 2),
                    ours_clips_s=round(batch / t["ours"], 2),
                    time_ratio=round(t["ours"] / t["tv"], 3),
                    torchvision_peak_mb=round(mem["tv"]),
                    ours_peak_mb=round(mem["ours"]),
                )
            )
            print(rows[-1])
    return rows


def optimized_vs_eager(
    device: torch.device, specs: List[tuple], repeats: int, compile: bool, amp: str
) -> List[Dict[str, object]]:
    rows = []
    for name, batch, frames in specs:
        torch.manual_seed(0)
        eager = r21d_zoo.create_model(name, pretrained=False).to(device).eval()
        x = torch.randn(batch, 3, frames, 112, 112, device=device)
        variants = {"eager": eager}
        variants["fold+cl3d"] = optimize_for_inference(eager, compile=False, amp="none", torchscript=False)
        if not device.type == "cuda":
            variants["fold+torchscript (CPU default)"] = optimize_for_inference(eager)
        if compile:
            variants["fold+cl3d+compile"] = optimize_for_inference(eager, compile=True, amp="none")
        if amp != "none":
            variants[f"fold+cl3d+{'compile+' if compile else ''}{amp}"] = optimize_for_inference(
                eager, compile=compile, amp=amp
            )
        with torch.inference_mode():
            ref = eager(x)
            for k, m in variants.items():  # also triggers compilation before timing
                err = (m(x).float() - ref).abs().max().item()
                print(f"{name} {k}: max |logit diff| vs eager = {err:.2e} ({err / ref.abs().max().item():.1e} of max)")
        t = interleaved_medians({k: fwd(m, x) for k, m in variants.items()}, repeats=repeats)
        for k in variants:
            rows.append(
                dict(
                    model=name,
                    mode=k,
                    input=f"{batch}x3x{frames}x112x112",
                    clips_s=round(batch / t[k], 2),
                    time_ratio_vs_eager=round(t[k] / t["eager"], 3),
                    peak_mb=round(peak_memory(fwd(variants[k], x), device)),
                )
            )
            print(rows[-1])
    return rows


def checkpoint_memory(device: torch.device, batch: int, frames: int) -> List[Dict[str, object]]:
    rows = []
    model = r21d_zoo.create_model("r2plus1d_152", pretrained=False).to(device).train()
    x = torch.randn(batch, 3, frames, 112, 112, device=device)
    for enabled in (False, True):
        model.set_grad_checkpointing(enabled)
        t = interleaved_medians(dict(step=fwd_bwd(model, x)), repeats=1, warmup=1)["step"]
        rows.append(
            dict(
                model="r2plus1d_152",
                mode=f"train fwd+bwd, grad checkpointing {'on' if enabled else 'off'}",
                input=f"{batch}x3x{frames}x112x112",
                peak_mb=round(peak_memory(fwd_bwd(model, x), device)),
                clips_s=round(batch / t, 3),
            )
        )
        print(rows[-1])
    model.set_grad_checkpointing(False)
    return rows


def markdown(tv_rows, opt_rows, ckpt_rows, device_name: str) -> str:
    lines = [f"Measured on {device_name} by `python bench/bench_models.py` (median of interleaved runs).", ""]
    lines += [
        "| model | mode | input | torchvision clips/s | ours clips/s | time ratio (ours / tv) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['mode']} | {r['input']} | {r['torchvision_clips_s']} | {r['ours_clips_s']} | "
        f"{r['time_ratio']} |"
        for r in tv_rows
    ]
    lines += ["", "| model | inference path | input | clips/s | time ratio vs eager |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['model']} | {r['mode']} | {r['input']} | {r['clips_s']} | {r['time_ratio_vs_eager']} |" for r in opt_rows
    ]
    if ckpt_rows:
        lines += ["", "| model | mode | input | peak memory (MB) | clips/s |", "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['mode']} | {r['input']} | {r['peak_mb']} | {r['clips_s']} |" for r in ckpt_rows]
    return "\n".join(lines)


def update_readme(path: Path, table: str, plot: str = None) -> None:
    text = path.read_text()
    if MARK_START not in text:
        raise SystemExit(f"{path} has no {MARK_START} ... {MARK_END} section to fill")
    body = table + (f"\n\n![clips/s per model and inference path]({plot})" if plot else "")
    head, rest = text.split(MARK_START, 1)
    tail = rest.split(MARK_END, 1)[1]
    path.write_text(f"{head}{MARK_START}\n{body}\n{MARK_END}{tail}")
    print(f"updated {path}")


def plot_chart(path: Path, tv_rows, opt_rows, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colours = [], [], []
    for r in tv_rows:
        for who, key, c in (("torchvision", "torchvision_clips_s", "#999999"), ("ours", "ours_clips_s", "#1f77b4")):
            labels.append(f"{r['model']} {r['mode']}\n{who}")
            values.append(r[key])
            colours.append(c)
    for r in opt_rows:
        batch, _, frames = r["input"].split("x")[:3]
        labels.append(f"{r['model']} batch {batch}, {frames}f\n{r['mode']}")
        values.append(r["clips_s"])
        colours.append("#2ca02c" if r["mode"] != "eager" else "#1f77b4")
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(labels) + 1))
    ax.barh(range(len(labels)), values, color=colours)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("clips / s (higher is better)")
    ax.set_title(title, fontsize=9)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:g}", va="center", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on GPU")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default=None, help="default: bf16 on GPU")
    parser.add_argument("--skip-checkpoint", action="store_true")
    parser.add_argument("--json", help="default: bench/results/models_<device>.json")
    parser.add_argument("--readme", type=Path, help="replace the README's bench table section")
    parser.add_argument("--plot", type=Path, help="write a PNG chart here")
    parser.add_argument("--from-json", type=Path, help="redo the README table and chart from saved results")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        title = saved["markdown"].split(" by ")[0].replace("Measured on ", "")
        if args.plot:
            plot_chart(args.plot, saved["vs_torchvision"], saved["optimized"], f"r21d_zoo on {title}")
        if args.readme:
            update_readme(args.readme, saved["markdown"], str(args.plot) if args.plot else None)
        return
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    compile = gpu if args.compile is None else args.compile
    amp = args.amp or ("bf16" if gpu else "none")
    if gpu:
        tv = vs_torchvision(device, batch=8, frames=16, repeats=args.repeats)
        specs = [("r2plus1d_18", 8, 16), ("r2plus1d_34", 8, 32), ("r2plus1d_152", 4, 32)]
        ckpt = dict(batch=4, frames=32)
    else:
        tv = vs_torchvision(device, batch=1, frames=16, repeats=args.repeats)
        specs = [
            ("r2plus1d_18", 1, 16),
            ("r2plus1d_18", 4, 16),
            ("r2plus1d_34", 1, 16),
            ("r2plus1d_34", 4, 16),
            ("r2plus1d_152", 1, 8),
        ]
        ckpt = dict(batch=1, frames=8)
    opt = optimized_vs_eager(device, specs, args.repeats, compile, amp)
    ck = [] if args.skip_checkpoint else checkpoint_memory(device, **ckpt)
    name = (
        torch.cuda.get_device_name(device)
        if gpu
        else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    )
    print()
    print_table(tv, list(tv[0]))
    print_table(opt, list(opt[0]))
    if ck:
        print_table(ck, list(ck[0]))
    table = markdown(tv, opt, ck, name)
    write_json(
        args.json or f"bench/results/models_{device.type}.json",
        dict(vs_torchvision=tv, optimized=opt, checkpointing=ck, markdown=table),
    )
    if args.plot:
        plot_chart(args.plot, tv, opt, f"r21d_zoo on {name}")
    if args.readme:
        update_readme(args.readme, table, str(args.plot) if args.plot else None)
    worst = max(r["time_ratio"] for r in tv)
    print(f"\nworst ours/torchvision time ratio: {worst:.3f} (target <= 1.0)")
    best: Dict[str, float] = {}
    for r in opt:
        if r["mode"] != "eager":
            key = f"{r['model']} {r['input']} {r['mode']}"
            best[key] = r["time_ratio_vs_eager"]
    print("optimised/eager time ratio: " + ", ".join(f"{k} {v:.3f}" for k, v in best.items()) + " (target <= 0.8)")


if __name__ == "__main__":
    main()
