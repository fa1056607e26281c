"""CPU inference runtimes, each measured against its baseline in the same process (interleaved medians):

1. models: R(2+1)D-18 and -34, batch 1 and 4, 16x112x112, same weights and input: torchvision's eager model vs ours
   on every runtime (``eager``; ``torch``: BN folded + TorchScript; ``onnxruntime``: our cached export; bf16:
   autocast + channels_last; int8: onnxruntime static quantization calibrated on 8 clips) and **ORT direct**: what a
   user does by hand, ``r21d_zoo.export`` + a default ``onnxruntime.InferenceSession``. Prints the max logit
   difference of each float32 path from torchvision's and our fastest float32 path / ORT direct (target <= 1.05).
2. extraction end-to-end (``run_extraction``: decoding workers + model, calibration excluded) of synthetic motion
   videos (:func:`r21d_zoo.data.synthetic.make_motion_dataset`) per runtime with R(2+1)D-18 at its weights' clip
   (16 x 112², random weights): int8 time / our fastest float32 time (target <= 0.6) and the per-clip cosine of int8
   features with float32's; then the agreement that matters for decisions, on a model whose classifier was trained:
   a quarter-width R(2+1)D-18 fine-tuned on left/right motion by ``r21d_zoo.finetune`` (8 epochs, 8 x 28² clips),
   int8 vs float32 on its 60 validation videos: mean clip cosine (>= 0.99) and top-1 agreement (>= 95%). (A random
   head's top-1 on random features is mostly near-ties, so its agreement says little.)

    python bench/bench_runtimes.py                      # writes bench/results/runtimes_cpu.json
    python bench/bench_runtimes.py --readme docs/performance.md   # also write the table into a page
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torchvision.models.video as tvm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, print_table, write_json  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo import optimize_for_inference  # noqa: E402
from r21d_zoo.data.inputs import VideoItem  # noqa: E402
from r21d_zoo.data.labelled import read_labelled  # noqa: E402
from r21d_zoo.data.synthetic import make_motion_dataset  # noqa: E402
from r21d_zoo.infer.config import ExtractConfig, InferenceOptions  # noqa: E402
from r21d_zoo.infer.extraction import run_extraction  # noqa: E402
from r21d_zoo.infer.config import ModelSource  # noqa: E402
from r21d_zoo.jobs.finetune import FinetuneConfig, finetune  # noqa: E402
from r21d_zoo.train.optim import OptimConfig  # noqa: E402

MARK_START, MARK_END = "<!-- runtime-table:start -->", "<!-- runtime-table:end -->"
FP32 = ("eager", "torch", "onnxruntime")


def ort_direct(model: torch.nn.Module, tmp: Path, frames: int):
    """``r21d_zoo.export`` and a default InferenceSession, as a user would run it by hand."""
    import onnxruntime as ort

    path = r21d_zoo.export(model, str(tmp / f"direct-{id(model)}.onnx"), num_frames=frames)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"clips": x.numpy()})[0])


def model_rows(tmp: Path, repeats: int) -> List[Dict[str, object]]:
    rows = []
    for arch, tv_arch in (("r2plus1d_18", "r2plus1d_18"), ("r2plus1d_34", None)):
        torch.manual_seed(0)
        model = r21d_zoo.create_model(f"{arch}.{'tv_kinetics400_16f' if tv_arch else 'ig65m_ft_kinetics400_32f'}",
                                      pretrained=False).eval()
        ref = getattr(tvm, tv_arch)().eval() if tv_arch else None
        if ref is not None:
            ref.load_state_dict(model.state_dict())
        calibration = torch.randn(8, 3, 16, 112, 112)
        paths = dict(
            eager=model,
            torch=optimize_for_inference(model),
            onnxruntime=optimize_for_inference(model, runtime="onnxruntime", cache_dir=tmp),
            bf16=optimize_for_inference(model, amp="bf16", torchscript=False),
            int8=optimize_for_inference(
                model, runtime="onnxruntime", amp="int8", calibration=calibration, cache_dir=tmp
            ),
        )
        direct = ort_direct(model, tmp, 16)
        for batch in (1, 4):
            x = torch.randn(batch, 3, 16, 112, 112)
            fns = {k: (lambda m=m: m(x)) for k, m in paths.items()}
            fns["ORT direct"] = lambda: direct(x)
            if ref is not None:
                fns["torchvision eager"] = lambda: ref(x)
            with torch.inference_mode():
                logits = {k: fn() for k, fn in fns.items()}  # also the first call: traces and exports
                t = interleaved_medians(fns, repeats=repeats)
            base = logits["ORT direct"]
            for k in fns:
                diff = (logits[k].float() - logits["eager"]).abs().max().item()
                cosine = torch.nn.functional.cosine_similarity(logits[k].float(), logits["eager"]).min().item()
                rows.append(
                    dict(
                        model=arch,
                        batch=batch,
                        path=k,
                        clips_s=round(batch / t[k], 2),
                        time_vs_ort_direct=round(t[k] / t["ORT direct"], 3),
                        max_logit_diff=f"{diff:.1e}",
                        min_logit_cosine=round(cosine, 5),
                    )
                )
                print(rows[-1])
            assert (base - logits["eager"]).abs().max() < 1e-4
    return rows


def motion_model(root: Path) -> torch.nn.Module:
    """R(2+1)D-18 (quarter width, 8 x 28² clips) fine-tuned on left/right motion with ``r21d_zoo``'s own finetune:
    a classifier whose decisions come from the task (val accuracy printed), for the top-1 agreement of int8."""
    train, val = make_motion_dataset(root, videos_per_class=100, val_per_class=30, num_frames=8, size=32)
    cfg = FinetuneConfig(
        model=ModelSource("r2plus1d_18", pretrained=False, model_args=dict(channel_multiplier=0.25)),
        clip=dict(num_frames=8, resize_size=(32, 32), crop_size=28), flip=False, batch_size=8, workers=0, amp="none",
        optim=OptimConfig(lr=0.02, reference_batch=8, epochs=8, warmup_epochs=1, schedule="cosine"), num_clips=1,
    )  # fmt: skip
    result = finetune(read_labelled(train), read_labelled(val, classes=["left", "right"]), cfg, progress=False)
    print(f"motion model: val video top-1 {result.history[-1]['val_video_top1']:.3f}")
    return result.model.eval()


def _agreement(model: torch.nn.Module, a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """Per-clip cosine of pooled features ``b`` with ``a`` and the top-1 agreement of the model's head on them."""
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    with torch.no_grad():
        top1 = [model.fc(torch.from_numpy(f)).argmax(1) for f in (a, b)]
    return dict(mean_clip_cosine=round(float(cosine.mean()), 5), min_clip_cosine=round(float(cosine.min()), 5),
                top1_agreement=round(float((top1[0] == top1[1]).double().mean()), 4))


def _features(out: Path, items: List[VideoItem]) -> np.ndarray:
    return np.concatenate([np.load(out / f"{item.name}.npy") for item in items])


def extraction_rows(tmp: Path, workers: int, repeats: int) -> List[Dict[str, object]]:
    # speed: R(2+1)D-18 at its weights' clip (16 x 112²) on 16 motion videos of 3.2 s, every runtime
    _, val = make_motion_dataset(tmp / "speed", videos_per_class=0, val_per_class=4, num_frames=32, size=128,
                                 directions=("left", "right", "up", "down"))
    items = [VideoItem(s.path, f"val{i}") for i, s in enumerate(read_labelled(val).samples)]
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18.tv_kinetics400_16f", pretrained=False).eval()
    runs = dict(
        eager=dict(inference=InferenceOptions(runtime="eager", amp="none")),
        torch=dict(inference=InferenceOptions(runtime="torch", amp="none")),
        onnxruntime=dict(inference=InferenceOptions(runtime="onnxruntime", amp="none")),
        int8=dict(inference=InferenceOptions(runtime="onnxruntime", amp="int8"), calibration_clips=16, force_int8=True),
    )
    cfg = ExtractConfig()
    seconds: Dict[str, List[float]] = {k: [] for k in runs}
    for i in range(repeats + 1):  # the first round exports and quantizes (cached): not timed
        for k, kwargs in runs.items():
            summary = run_extraction(items, tmp / k, model, cfg, workers=workers, resume=False, progress=False,
                                     **kwargs)  # fmt: skip
            if i:
                seconds[k].append(summary.seconds)  # decoding + model, calibration excluded
    t = {k: float(np.median(v)) for k, v in seconds.items()}
    fastest = min(FP32, key=t.get)
    rows = []
    for k in runs:
        row = dict(model="r2plus1d_18 16x112² (random weights)", path=f"extract, {k}",
                   clips_s=round(summary.clips / t[k], 2), time_vs_fastest_fp32=round(t[k] / t[fastest], 3))
        if k == "int8":
            row.update(_agreement(model, _features(tmp / fastest, items), _features(tmp / k, items)))
            row["top1_agreement_note"] = "random head: near-ties"
        rows.append(row)
        print(row)
    # agreement: a model fine-tuned on the motion task, int8 vs float32 on its 60 validation videos
    small = motion_model(tmp / "task")
    val = tmp / "task" / "val.csv"
    items = [VideoItem(s.path, f"val{i}") for i, s in enumerate(read_labelled(val).samples)]
    for k in ("eager", "int8"):
        run_extraction(items, tmp / f"task-{k}", small, cfg, workers=workers, resume=False, progress=False,
                       **runs[k])  # fmt: skip
    row = dict(model="r2plus1d_18 x0.25 fine-tuned on motion (8x28²)", path="extract, int8 vs eager float32")
    row.update(_agreement(small, _features(tmp / "task-eager", items), _features(tmp / "task-int8", items)))
    rows.append(row)
    print(row)
    return rows


def markdown(model: List[Dict[str, object]], extract: List[Dict[str, object]], name: str) -> str:
    lines = [f"Measured on {name} by `python bench/bench_runtimes.py` (median of interleaved runs).", ""]
    lines += ["| model | batch | path | clips/s | time / ORT direct | max logit diff vs eager |", "|" + "---|" * 6]
    lines += [
        f"| {r['model']} | {r['batch']} | {r['path']} | {r['clips_s']} | {r['time_vs_ort_direct']} | "
        f"{r['max_logit_diff']} |"
        for r in model
    ]
    lines += ["", "| extraction (decode + model) | clips/s | time / fastest float32 | int8: mean (min) clip cosine, "
              "top-1 agreement |", "|---|---|---|---|"]
    for r in extract:
        extra = (f"{r['mean_clip_cosine']} ({r['min_clip_cosine']}), {r['top1_agreement']:.1%}"
                 if "top1_agreement" in r else "")
        if "top1_agreement_note" in r:
            extra += f" ({r['top1_agreement_note']})"
        lines.append(f"| {r['model']}: {r['path']} | {r.get('clips_s', '-')} | {r.get('time_vs_fastest_fp32', '-')} "
                     f"| {extra} |")
    return "\n".join(lines)


def update_readme(path: Path, table: str) -> None:
    text = path.read_text()
    if MARK_START not in text:
        raise SystemExit(f"{path} has no {MARK_START} ... {MARK_END} section to fill")
    head, rest = text.split(MARK_START, 1)
    path.write_text(f"{head}{MARK_START}\n{table}\n{MARK_END}{rest.split(MARK_END, 1)[1]}")
    print(f"updated {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes in the extraction rows")
    parser.add_argument("--json", default="bench/results/runtimes_cpu.json")
    parser.add_argument("--readme", type=Path, help="replace the README's runtime table section")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = model_rows(Path(tmp), args.repeats)
        extract = extraction_rows(Path(tmp), args.workers, repeats=2)
    name = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    print()
    print_table(model, list(model[0]))
    print_table(extract, list(extract[-2]))
    table = markdown(model, extract, name)
    write_json(args.json, dict(models=model, extraction=extract, markdown=table))
    if args.readme:
        update_readme(args.readme, table)
    print()
    for arch in dict.fromkeys(r["model"] for r in model):
        for batch in (1, 4):
            mine = [r for r in model if r["model"] == arch and r["batch"] == batch and r["path"] in FP32]
            best = min(mine, key=lambda r: r["time_vs_ort_direct"])
            print(f"{arch} batch {batch}: our fastest float32 path ({best['path']}) / ORT direct time = "
                  f"{best['time_vs_ort_direct']:.3f} (target <= 1.05)")
    speed, task = extract[-2], extract[-1]
    print(f"int8 extraction / fastest float32 time = {speed['time_vs_fastest_fp32']:.3f} (target <= 0.6), mean clip "
          f"cosine {speed['mean_clip_cosine']:.4f}; on the fine-tuned motion model: mean clip cosine "
          f"{task['mean_clip_cosine']:.4f} (>= 0.99), top-1 agreement {task['top1_agreement']:.1%} (>= 95%)")


if __name__ == "__main__":
    main()
