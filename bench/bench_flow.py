"""Optical flow against the model it feeds, in the same process (interleaved medians): for one clip of the flow
weight (``r2plus1d_34.sports1m_ft_kinetics400_flow_32f``: 32 flow frames of 112x112, so 33 RGB frames), the time to
compute its flow with each method (``farneback``: OpenCV on the CPU, what the weights were trained on; ``raft_small``
/ ``raft_large``: torchvision's RAFT, 12 updates, upsampled to 128 px) against the time of the model's forward pass
(batch 1, eager, random weights: speed does not depend on them). Prints flow frames/s, model clips/s and the ratio
flow time / model time per clip (above 1: flow is the bottleneck). RAFT runs with random weights too (its speed is
the same; this machine cannot download torchvision's), so its rows measure speed only.

    python bench/bench_flow.py                           # writes bench/results/flow_<cpu|cuda>.json
    python bench/bench_flow.py --readme docs/flow.md     # also the flow table of the flow guide (CPU)
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, print_table, write_json  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo.models import ClipSpec  # noqa: E402
from r21d_zoo.video import VideoClassificationTransform, flow  # noqa: E402

TAG = "r2plus1d_34.sports1m_ft_kinetics400_flow_32f"
MARK_START, MARK_END = "<!-- flow-table:start -->", "<!-- flow-table:end -->"


def use_random_raft(methods: List[str], device: str) -> None:
    """Random-init RAFT models where :func:`flow.raft_model` looks (speed only: no weights can be fetched here)."""
    from torchvision.models import optical_flow

    models = {m: getattr(optical_flow, m)(weights=None).eval().requires_grad_(False).to(device) for m in methods}
    flow.raft_model = lambda method, _device: models[method]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["farneback", "raft_small", "raft_large"])
    parser.add_argument("--readme", help="rewrite the flow table between the markers of this README")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = r21d_zoo.create_model(TAG, pretrained=False).eval().to(device)
    spec = ClipSpec.from_model(model)
    n, _ = spec.frames_to_read()
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, 128, 171, 3), dtype=np.uint8)).to(device)
    crop = VideoClassificationTransform.from_spec(spec)
    x = crop(frames)  # the model's input, farneback flow
    calls: Dict[str, object] = {}
    use_random_raft([m for m in args.methods if m.startswith("raft")], device)
    for method in args.methods:
        transform = VideoClassificationTransform.from_spec(ClipSpec.from_model(model, flow_method=method)).to(device)
        calls[method] = lambda t=transform: t(frames)

    def run_model() -> None:
        with torch.inference_mode():
            model(x)

    calls["model"] = run_model
    times = interleaved_medians(calls, repeats=args.repeats)
    rows: List[Dict[str, object]] = []
    for method in args.methods:
        rows.append(
            {
                "flow method": method,
                "flow frames/s": f"{spec.num_frames / times[method]:.1f}",
                "flow s/clip": f"{times[method]:.3f}",
                "model clips/s": f"{1 / times['model']:.2f}",
                "flow / model time": f"{times[method] / times['model']:.2f}",
            }
        )
    table = print_table(rows, list(rows[0]))
    threads = torch.get_num_threads()
    write_json(
        f"bench/results/flow_{device}.json",
        dict(tag=TAG, clip=f"{spec.num_frames}x{spec.crop_size}^2", threads=threads, times_s=times, rows=rows),
    )
    if args.readme and device == "cpu":
        readme = Path(args.readme)
        text = readme.read_text()
        start, end = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
        readme.write_text(text[:start] + "\n" + table + "\n" + text[end:])
        print(f"updated {readme}")


if __name__ == "__main__":
    main()
