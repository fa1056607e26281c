"""``r21d-zoo demo``: synthesise a short H.264 clip, run a model on it, print predictions and speed."""

import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ..deploy.choice import choose_runtime
from ..deploy.optimize import optimize_for_inference
from ..models import ClipSpec
from ..video import create_transform, read_clip, write_video
from .configs import DEMO_MODEL as DEMO_MODEL, DemoConfig as DemoConfig
from ..infer.config import ModelSource, create_or_fall_back


def synthesize_clip(path: str, num_frames: int = 48, size: Tuple[int, int] = (240, 320), fps: int = 30) -> str:
    """A textured square moving across a gradient background, encoded as H.264."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 96)], -1).astype(np.uint8)
    texture = (np.indices((40, 40)).sum(0) % 8 < 4)[..., None] * np.array([230, 40, 40], np.uint8)

    def frames():
        for i in range(num_frames):
            frame = background.copy()
            x0 = int((w - 40) * i / max(1, num_frames - 1))
            frame[h // 2 - 20 : h // 2 + 20, x0 : x0 + 40] = texture
            yield frame

    return write_video(path, frames(), fps)


def run_demo(
    source: ModelSource, video: Optional[str] = None, repeats: int = 3, runtime: str = "eager"
) -> Dict[str, object]:
    """Run ``source``'s model on the first clip of ``video`` (or of a synthetic clip), on ``runtime`` (``auto``: the
    fastest, measured once, :mod:`r21d_zoo.deploy.choice`; else see :func:`~r21d_zoo.optimize_for_inference`).
    Registry weights that cannot be downloaded fall back to random weights, said loudly
    (:func:`~r21d_zoo.infer.config.create_or_fall_back`)."""
    model, used_pretrained = create_or_fall_back(source, "demo")
    model.eval()
    spec = ClipSpec.from_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = video or synthesize_clip(str(Path(tmp) / "demo.mp4"), num_frames=max(48, spec.num_frames))
        frames = read_clip(path, 0.0, spec=spec).frames  # seeks and decodes only this clip
    clip = create_transform(spec)(frames)
    if runtime == "auto":
        runtime, _ = choose_runtime(model, tuple(clip.shape), "none", "cpu", example=clip)
    if runtime != "eager":
        model = optimize_for_inference(model, amp="none", runtime=runtime)
    with torch.inference_mode():
        features = model.forward_features(clip)
        logits = model(clip)  # also the warm-up: the first call may trace or export
        start = time.perf_counter()
        for _ in range(repeats):
            model(clip)
        clips_per_s = repeats / (time.perf_counter() - start)
    probs = logits.softmax(-1)[0]
    top = probs.topk(min(5, probs.numel()))
    labels = model.pretrained_cfg.get("label_names")
    predictions = [(labels[i] if labels else f"class {i}", float(p)) for p, i in zip(top.values, top.indices.tolist())]
    return dict(
        model=source.name,
        runtime=runtime,
        pretrained=used_pretrained,
        input_shape=tuple(clip.shape),
        feature_shape=tuple(features.shape),
        predictions=predictions,
        clips_per_s=clips_per_s,
    )


def print_demo(result: Dict[str, object]) -> None:
    weights = "pretrained" if result["pretrained"] else "RANDOM (not pretrained)"
    print(f"model: {result['model']} ({weights} weights)")
    print(f"input clip: {result['input_shape']}  feature map: {result['feature_shape']}")
    print("top-5:")
    for label, p in result["predictions"]:
        print(f"  {p:6.3f}  {label}")
    print(
        f"throughput: {result['clips_per_s']:.2f} clips/s on {'GPU' if torch.cuda.is_available() else 'CPU'} "
        f"(batch 1, {torch.get_num_threads()} threads, runtime {result['runtime']})"
    )


def run(cfg: DemoConfig) -> int:
    print_demo(run_demo(cfg.model, cfg.video, runtime=cfg.runtime))
    return 0
