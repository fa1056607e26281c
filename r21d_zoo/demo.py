"""``r21d-zoo demo``: synthesise a short H.264 clip with PyAV, run a model on it, print predictions and speed."""

import logging
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from .models import WeightsError, create_model, get_pretrained_cfg
from .transforms import create_transform

DEFAULT_MODEL = "r2plus1d_34.ig65m_ft_kinetics400_8f"
_logger = logging.getLogger(__name__)


def synthesize_clip(path: str, num_frames: int = 48, size: tuple = (240, 320), fps: int = 30) -> str:
    """A textured square moving across a gradient background, encoded as H.264 with PyAV."""
    import av

    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 96)], -1).astype(np.uint8)
    texture = (np.indices((40, 40)).sum(0) % 8 < 4)[..., None] * np.array([230, 40, 40], np.uint8)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(num_frames):
            frame = background.copy()
            x0 = int((w - 40) * i / max(1, num_frames - 1))
            frame[h // 2 - 20 : h // 2 + 20, x0 : x0 + 40] = texture
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_all_frames(path: str) -> torch.Tensor:
    """Every frame of a short video as uint8 T x H x W x 3 (the demo's clip is tiny; long videos use r21d_zoo's
    clip decoder instead)."""
    import av

    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames))


def run_demo(
    model_name: str = DEFAULT_MODEL, pretrained: bool = True, video: Optional[str] = None, repeats: int = 3
) -> Dict[str, object]:
    cfg = get_pretrained_cfg(model_name)
    used_pretrained = False
    if pretrained:
        try:
            model = create_model(model_name, pretrained=True)
            used_pretrained = True
        except WeightsError as e:
            print(
                f"[demo] pretrained weights for {model_name} are not cached and not reachable; "
                f"FALLING BACK TO RANDOM WEIGHTS (predictions are meaningless).\n[demo] reason: {e}"
            )
    if not used_pretrained:
        model = create_model(model_name)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = video or synthesize_clip(str(Path(tmp) / "demo.mp4"), num_frames=max(48, cfg.num_frames))
        frames = read_all_frames(path)
    clip = create_transform(model)(frames[: cfg.num_frames * cfg.sampling_stride : cfg.sampling_stride])
    with torch.inference_mode():
        features = model.forward_features(clip)
        logits = model.forward_head(features)
        start = time.perf_counter()
        for _ in range(repeats):
            model(clip)
        clips_per_s = repeats / (time.perf_counter() - start)
    probs = logits.softmax(-1)[0]
    top = probs.topk(5)
    labels = model.pretrained_cfg.get("label_names")
    predictions = [(labels[i] if labels else f"class {i}", float(p)) for p, i in zip(top.values, top.indices.tolist())]
    return dict(
        model=model_name,
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
        f"(batch 1, {torch.get_num_threads()} threads)"
    )
