"""Clip preprocessing built from a :class:`ClipSpec` (normally the weights' own), so nobody copies mean/std from a
README: the evaluation transform (resize, centre / three / no crop, normalise) and the training augmentation (random
crop and flip). For a flow model (``spec.modality == "flow"``) both compute the optical flow of the cropped (and
flipped) frames, as caffe2's ``VideoInput`` did for the VMZ flow weights, and normalise the flow."""

import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import CROP_MODES, ClipSpec
from .flow import clip_flow


def resized_hw(h: int, w: int, size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """Output size of resizing ``h x w`` to ``(H, W)`` or to a short side (aspect kept, torchvision's rule)."""
    if isinstance(size, int):
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(size * long / short)
        return (size, new_long) if h <= w else (new_long, size)
    return int(size[0]), int(size[1])


def _resize(
    x: torch.Tensor, size: Tuple[int, int], interpolation: str, antialias: bool, to_uint8: bool
) -> torch.Tensor:
    """(N, C, H, W) float -> resized; with ``to_uint8`` rounded back to integer values as the reference pipelines do."""
    smooth = interpolation in ("bilinear", "bicubic")  # the modes that take align_corners and antialias
    x = F.interpolate(
        x, size=size, mode=interpolation, align_corners=False if smooth else None, antialias=antialias and smooth
    )
    return x.round_().clamp_(0, 255) if to_uint8 else x


def resize_frames(
    frames: torch.Tensor, size: Union[int, Sequence[int]], interpolation: str = "bilinear", antialias: bool = False
) -> torch.Tensor:
    """Resize uint8 (T, H, W, C) frames to ``(H, W)`` or a short side, back to uint8 (what decoding workers send)."""
    t, h, w, c = frames.shape
    out = resized_hw(h, w, size)
    if out == (h, w):
        return frames
    x = _resize(frames.permute(0, 3, 1, 2).float(), out, interpolation, antialias, to_uint8=True)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class VideoClassificationTransform(nn.Module):
    """uint8 frames (T, H, W, C) or a batch (B, T, H, W, C) -> normalised float clips (B, C, T, crop, crop); for
    ``modality="flow"``, RGB frames (as :meth:`ClipSpec.frames_to_read` reads them) -> normalised flow (B, 2, T,
    crop, crop), computed on the cropped frames with ``flow_method`` (:func:`~r21d_zoo.video.flow.clip_flow`).

    ``crop_mode="three"`` takes three crops along the long side (start, centre, end; the papers' 3-crop test) and
    returns them as (B * 3, C, T, crop, crop), the crops of one clip adjacent; ``"full"`` keeps the whole (resized)
    frame, for fully-convolutional evaluation.

    uint8 frames are resized and rounded back to integers before scaling to [0, 1], as torchvision's
    ``VideoClassification`` preset (``antialias=False``) does for the published torchvision numbers. Float input is
    taken as already in [0, 1]. Run it on the GPU: move the uint8 tensor first, then call this.
    """

    def __init__(
        self,
        resize_size: Union[int, Sequence[int], None],
        crop_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bilinear",
        antialias: bool = False,
        crop_mode: str = "center",
        modality: str = "rgb",
        flow_method: str = "farneback",
        sampling_stride: int = 1,
    ):
        super().__init__()
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        self.crop_mode = crop_mode
        self.resize_size = resize_size if resize_size is None or isinstance(resize_size, int) else tuple(resize_size)
        self.crop_size = crop_size
        self.interpolation = interpolation
        self.antialias = antialias
        self.modality, self.flow_method, self.sampling_stride = modality, flow_method, sampling_stride
        self.in_chans = 3 if modality == "flow" else len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() == 4:
            frames = frames.unsqueeze(0)
        if frames.dim() != 5 or frames.shape[-1] != self.in_chans:
            raise ValueError(
                f"expected frames as (T, H, W, C) or (B, T, H, W, C) with C={self.in_chans}, "
                f"got shape {tuple(frames.shape)}"
            )
        b, t, h, w, c = frames.shape
        x = frames.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w)
        is_uint8 = frames.dtype == torch.uint8
        x = x.float()
        if self.resize_size is not None:
            size = resized_hw(h, w, self.resize_size)
            if size != (h, w):  # resized frames are uint8 again in the reference pipelines (torchvision, caffe2)
                x = _resize(x, size, self.interpolation, self.antialias, to_uint8=is_uint8)
        if self.crop_mode == "three":
            x = torch.stack(_three_crops(x, self.crop_size), 1)  # (B*T, 3, C, S, S)
            x = x.reshape(b, t, 3, c, self.crop_size, self.crop_size).transpose(1, 2)
            b = b * 3
        elif self.crop_mode == "center":
            x = _center_crop(x, self.crop_size)
        x = x.reshape(b, t, c, *x.shape[-2:])
        x = model_input(x, is_uint8, self.modality, self.flow_method, self.sampling_stride)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @classmethod
    def from_spec(cls, spec: ClipSpec) -> "VideoClassificationTransform":
        return cls(
            spec.resize_size,
            spec.crop_size,
            spec.mean,
            spec.std,
            spec.interpolation,
            spec.antialias,
            spec.crop_mode,
            spec.modality,
            spec.flow_method,
            spec.sampling_stride,
        )

    def extra_repr(self) -> str:
        flow = f"modality=flow, flow_method={self.flow_method}, " if self.modality == "flow" else ""
        return (
            f"{flow}resize_size={self.resize_size}, crop_size={self.crop_size}, crop_mode={self.crop_mode}, "
            f"interpolation={self.interpolation}, antialias={self.antialias}, mean={self.mean.flatten().tolist()}, "
            f"std={self.std.flatten().tolist()}"
        )


def model_input(x: torch.Tensor, pixels: bool, modality: str, flow_method: str, stride: int) -> torch.Tensor:
    """Cropped float frames (B, N, C, H, W), in 0..255 if ``pixels`` else in [0, 1] -> what the model normalises
    (B, C', T, H, W): RGB in [0, 1], or for ``modality="flow"`` the flow in pixels at T = (N - 2) // stride + 1
    positions (:func:`~r21d_zoo.video.flow.clip_flow`)."""
    if modality != "flow":
        return (x / 255.0 if pixels else x).transpose(1, 2)
    n = x.shape[1]
    if n < 2:
        raise ValueError(f"a flow clip needs at least 2 frames, got {n}")
    return clip_flow(x if pixels else x * 255.0, (n - 2) // stride + 1, stride, flow_method)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` over dim 1 (channels) of a float tensor in [0, 1] of any rank."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


def _check_size(x: torch.Tensor, size: int) -> None:
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}-pixel crop; set a resize_size")


def center_crop_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """The centre crop of (T, H, W, C) frames, where :class:`VideoClassificationTransform` takes it: what the model
    sees, for drawing on."""
    return _center_crop(frames.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    _check_size(x, size)
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))  # torchvision center_crop
    return x[..., top : top + size, left : left + size]


def _three_crops(x: torch.Tensor, size: int) -> List[torch.Tensor]:
    """Square crops at the start, centre and end of the long side (pytorchvideo/SlowFast ``uniform_crop``)."""
    _check_size(x, size)
    h, w = x.shape[-2:]
    centre = _center_crop(x, size)
    if w >= h:
        top = int(round((h - size) / 2.0))
        return [x[..., top : top + size, :size], centre, x[..., top : top + size, w - size :]]
    left = int(round((w - size) / 2.0))
    return [x[..., :size, left : left + size], centre, x[..., h - size :, left : left + size]]


def create_transform(model_or_spec: Any = None, **overrides: Any) -> VideoClassificationTransform:
    """The evaluation transform of a model's weights (or of a :class:`ClipSpec`); ``overrides`` replace single clip
    fields (see :meth:`ClipSpec.from_model`)."""
    return VideoClassificationTransform.from_spec(ClipSpec.from_model(model_or_spec, **overrides))


def jitter_scale(
    clips: torch.Tensor, scales: Tuple[int, int], spec: ClipSpec, generator: torch.Generator
) -> List[torch.Tensor]:
    """Scale jitter (VMZ's ``jitter_scales``): each uint8 (T, H, W, C) clip of ``clips`` resized so that its short
    side is drawn uniformly from ``scales`` (both ends included), with the clip's interpolation."""
    low, high = scales
    sides = torch.randint(low, high + 1, (len(clips),), generator=generator).tolist()
    return [resize_frames(clip, side, spec.interpolation, spec.antialias) for clip, side in zip(clips, sides)]


def train_augment(
    clips: torch.Tensor,
    spec: ClipSpec,
    flip: bool,
    generator: torch.Generator,
    jitter_scales: Optional[Tuple[int, int]] = None,
) -> torch.Tensor:
    """uint8 (B, T, H, W, C) on any device, already resized -> normalised (B, C, T, crop, crop): with
    ``jitter_scales``, each clip's short side resized to a random size in that range first (:func:`jitter_scale`);
    then a random ``spec.crop_size`` crop per clip and, with ``flip``, a random horizontal flip (turn it off when
    left/right is part of the label)."""
    size = spec.crop_size
    scaled = jitter_scale(clips, jitter_scales, spec, generator) if jitter_scales else list(clips)
    h, w = min(c.shape[1] for c in scaled), min(c.shape[2] for c in scaled)
    if h < size or w < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}-pixel crop; raise resize_size")
    b = len(scaled)
    if jitter_scales:  # clips of different sizes: a crop position each
        tops = [int(torch.randint(0, c.shape[1] - size + 1, (1,), generator=generator)) for c in scaled]
        lefts = [int(torch.randint(0, c.shape[2] - size + 1, (1,), generator=generator)) for c in scaled]
    else:
        tops = torch.randint(0, h - size + 1, (b,), generator=generator).tolist()
        lefts = torch.randint(0, w - size + 1, (b,), generator=generator).tolist()
    flips = (torch.rand(b, generator=generator) < 0.5).tolist() if flip else [False] * b
    out = []
    for i in range(b):
        x = scaled[i][:, tops[i] : tops[i] + size, lefts[i] : lefts[i] + size]
        out.append(x.flip(2) if flips[i] else x)  # flow is computed after the flip, as caffe2 did
    x = torch.stack(out).permute(0, 1, 4, 2, 3).float()
    return normalize(model_input(x, True, spec.modality, spec.flow_method, spec.sampling_stride), spec.mean, spec.std)


def mix_batch(
    x: torch.Tensor, target: torch.Tensor, mixup_alpha: float, cutmix_alpha: float, generator: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a batch of clips (B, C, T, H, W) with the batch reversed, as timm's ``Mixup`` does for
    images (one lambda per batch; with both alphas, CutMix or mixup with even odds): mixup blends the clips, CutMix
    pastes one box of the other clip into every frame (the same box through time). ``target``: (B, K) one-hot or
    multi-hot; returns the mixed clips and targets, weighted by the area each clip keeps."""
    kinds = [k for k, a in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if a > 0]
    if not kinds:
        return x, target
    kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))]
    alpha = mixup_alpha if kind == "mixup" else cutmix_alpha
    seed = int(torch.randint(2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    other = x.flip(0)
    if kind == "mixup":
        mixed = x * lam + other * (1 - lam)
    else:
        h, w = x.shape[-2:]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = (int(torch.randint(n, (1,), generator=generator)) for n in (h, w))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = other[..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (h * w)  # the area actually kept
    return mixed, target * lam + target.flip(0) * (1 - lam)
