""":func:`grad_cam` (``r21d-zoo explain``): why the model thinks so, as space-time Grad-CAM.

Grad-CAM (Selvaraju et al., ICCV 2017) in 3D: the gradient of a class's logit with respect to a stage's feature map
(C, T', H', W'), averaged over time and space, weights the map's channels; the ReLU of the weighted sum is upsampled
(trilinearly) to the clip's (T, H, W) and scaled to [0, 1]. Any stage of the model's ``feature_info`` (by name, such
as ``stem`` or ``layer1``-``layer4``, or by index) works for every family: R(2+1)D, R3D, MC/rMC and CSN alike;
deeper stages are coarser (``layer4`` of a 112-pixel crop is 7x7 over T/8), ``layer3`` is twice as fine. A flow model is
explained over its flow input and drawn on the RGB frames the flow was computed from.

Outputs (``-o OUT``): ``NAME.gradcam.gif`` (the heatmap over the frames the model saw: resized and centre-cropped),
``NAME.importance.csv`` and ``NAME.importance.png`` (each frame's share of the heat, over time) and
``NAME.gradcam.json`` (class, score, layer, clip start).
"""

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from .._errors import InputError
from .._io import atomic_write
from ..models import ClipSpec
from ..video import VideoClassificationTransform, open_video
from ..video.reader import DEFAULT_DECODER
from ..video.transforms import center_crop_frames
from .features import stage_index
from .scores import model_classes



@dataclass
class GradCam:
    """``heat``: (T, H, W) in [0, 1] over the model's input clip; ``target``/``score``: the class explained and its
    softmax probability; ``frame_importance``: (T,) each frame's share of the heat (sums to 1; all zero for an empty
    map, whose ``no_signal`` says why)."""

    heat: torch.Tensor
    target: int
    score: float
    layer: str
    no_signal: str = ""  # why the map is empty (all zero), when it is: then no frame or region is more important

    @property
    def frame_importance(self) -> np.ndarray:
        """Each frame's share of the heat; all zero for an empty map (no share to give)."""
        per_frame = self.heat.sum(dim=(1, 2)).double().numpy()
        total = per_frame.sum()
        return per_frame / total if total > 0 else np.zeros(len(per_frame))

    def summary(self, label: str, times: np.ndarray) -> str:
        """One line for a console: the class, its score and the most important frame, or why there is none."""
        head = f"{label} ({self.score:.3f}) at {self.layer}"
        if self.no_signal:
            return f"{head}: NO SIGNAL, the heat map is empty: {self.no_signal}"
        peak = int(np.argmax(self.frame_importance))
        return f"{head}; most important frame {peak} ({times[peak]:.2f}s)"


def stage_name(model: nn.Module, layer: Union[str, int]) -> str:
    """The ``feature_info`` module name of a stage given by name or index (``layer4``, ``3``)."""
    return model.feature_info[stage_index(model, layer)]["module"]


def check_layer(model: nn.Module, layer: Union[str, int]) -> str:
    """:func:`stage_name`, with a stage the model does not have as the input error of ``--layer``."""
    try:
        return stage_name(model, layer)
    except ValueError as e:
        raise InputError(f"--layer: {e}") from e


def grad_cam(model: nn.Module, clip: torch.Tensor, target: Optional[int] = None, layer: Union[str, int] = "layer4"
             ) -> GradCam:
    """Space-time Grad-CAM of class ``target`` (default: the top class) on one normalised clip (C, T, H, W) or
    (1, C, T, H, W), at stage ``layer``. The model is run in eval mode; its parameters are left untouched."""
    x = clip if clip.dim() == 5 else clip.unsqueeze(0)
    if x.shape[0] != 1:
        raise ValueError(f"grad_cam explains one clip at a time, got a batch of {x.shape[0]}")
    name = stage_name(model, layer)
    seen: List[torch.Tensor] = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, i, out: seen.append(out))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().float().requires_grad_(True)  # a graph even when every parameter is frozen
            logits = model(x)
            target = int(logits[0].argmax()) if target is None else int(target)
            if not 0 <= target < logits.shape[1]:
                raise ValueError(f"class {target} is out of range: the model has {logits.shape[1]} classes")
            (grad,) = torch.autograd.grad(logits[0, target], seen[-1])
    finally:
        handle.remove()
        model.train(was_training)
    fmap = seen[-1].detach()
    cam = F.relu((grad.mean(dim=(2, 3, 4), keepdim=True) * fmap).sum(1, keepdim=True))  # (1, 1, T', H', W')
    heat = F.interpolate(cam, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)[0, 0]
    peak = heat.max()
    heat = heat / peak if peak > 0 else torch.zeros_like(heat)
    score = float(logits.detach()[0].softmax(-1)[target])
    return GradCam(heat.cpu(), target, score, name, "" if peak > 0 else _why_empty(grad, name, target))


def _why_empty(grad: torch.Tensor, layer: str, target: int) -> str:
    if not bool(grad.abs().gt(0).any()):
        return (
            f"the gradient of class {target}'s score with respect to {layer} is zero everywhere (nothing at that "
            f"stage changes the score); try a deeper --layer"
        )
    return (
        f"no place at {layer} raises class {target}'s score (the channel-weighted map is negative everywhere, and "
        f"Grad-CAM keeps only what raises it); try another --layer, or --target the class the model chose"
    )


@dataclass
class Explanation:
    """A clip's Grad-CAM with the frames it explains: ``frames`` uint8 (T, S, S, 3) as the model saw them, ``times``
    (T,) seconds."""

    cam: GradCam
    frames: np.ndarray
    times: np.ndarray
    label: str
    start: float

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """(T, S, S, 3) uint8: the frames blended with the heatmap in matplotlib's ``jet``."""
        from matplotlib import colormaps

        colours = colormaps["jet"](self.cam.heat.numpy())[..., :3] * 255
        return (self.frames * (1 - alpha) + colours * alpha).round().clip(0, 255).astype(np.uint8)


def explain(
    model: nn.Module,
    video: str,
    start: float = 0.0,
    target: Union[int, str, None] = None,
    layer: Union[str, int] = "layer4",
    clip: Optional[Dict[str, Any]] = None,
    decoder: str = DEFAULT_DECODER,
    device: Optional[str] = None,
) -> Explanation:
    """Grad-CAM of the clip of ``video`` starting at ``start`` seconds, for class ``target`` (an index or a label;
    default: the clip's top class). ``clip`` overrides the weights' clip settings (centre crop unless it says)."""
    clip = dict(clip or {})
    spec = ClipSpec.from_model(model, **dict(clip, crop_mode=clip.get("crop_mode", "center")))
    if spec.crop_mode != "center":
        raise InputError(f"explain draws on the centre crop; --crop {spec.crop_mode} cannot be explained; drop --crop")
    labels = model_classes(model)
    if isinstance(target, str) and not target.isdigit():
        if target not in labels:
            shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
            raise InputError(f"--target {target!r} is not one of the model's classes ({shown}); give a class or index")
        target = labels.index(target)
    dev = torch.device(device) if device else next(model.parameters()).device
    with open_video(video, spec, decoder) as reader:
        frames = reader.read_spec_clip(start, spec)
    x = VideoClassificationTransform.from_spec(spec).to(dev)(frames.frames.to(dev))
    cam = grad_cam(model.to(dev), x, None if target is None else int(target), layer)
    shown = center_crop_frames(frames.frames[: spec.num_frames], spec.crop_size).numpy()  # flow: its first frames
    return Explanation(cam, shown, frames.times[: spec.num_frames], labels[cam.target], start)


def write_explanation(e: Explanation, out: Path, name: str, fps: float = 4.0) -> List[Path]:
    """``NAME.gradcam.gif``, ``NAME.importance.csv``/``.png`` and ``NAME.gradcam.json`` in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    paths = [out / f"{name}.gradcam.gif", out / f"{name}.importance.csv", out / f"{name}.importance.png",
             out / f"{name}.gradcam.json"]
    scale = max(1, 224 // e.frames.shape[1])  # small crops drawn bigger
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in e.overlay()]
    atomic_write(paths[0], lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                    duration=int(1000 / fps), loop=0))
    importance = e.cam.frame_importance
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["frame", "time", "importance"])
    writer.writerows([i, round(float(t), 6), round(float(v), 6)] for i, (t, v) in enumerate(zip(e.times, importance)))
    atomic_write(paths[1], lambda f: f.write(buf.getvalue().encode()))
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.bar(e.times, importance, width=float(np.diff(e.times).mean()) * 0.8 if len(e.times) > 1 else 0.1)
    ax.set(xlabel="time (s)", ylabel="share of the heat", title=f"{e.label} ({e.cam.score:.2f}), {e.cam.layer}")
    fig.tight_layout()
    atomic_write(paths[2], lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    record = dict(label=e.label, target=e.cam.target, score=round(e.cam.score, 6), layer=e.cam.layer, start=e.start,
                  no_signal=e.cam.no_signal or None,
                  frame_times=[round(float(t), 6) for t in e.times], frame_importance=importance.round(6).tolist())
    atomic_write(paths[3], lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))
    return paths
