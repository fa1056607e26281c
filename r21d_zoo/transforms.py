"""Evaluation preprocessing built from a weight's own config, so nobody copies mean/std from a README."""

from typing import Any, Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models._pretrained import PretrainedCfg

DATA_KEYS = (
    "num_frames",
    "frame_rate",
    "sampling_stride",
    "resize_size",
    "crop_size",
    "interpolation",
    "antialias",
    "mean",
    "std",
)


def resolve_data_config(model_or_cfg: Union[nn.Module, PretrainedCfg, Dict[str, Any]]) -> Dict[str, Any]:
    """The input spec of a model's weights: clip length, frame rate/stride, resize, crop, interpolation, mean, std."""
    if isinstance(model_or_cfg, nn.Module):
        cfg = getattr(model_or_cfg, "pretrained_cfg", None)
        if cfg is None:
            raise ValueError("the model has no pretrained_cfg; build it with r21d_zoo.create_model")
    elif isinstance(model_or_cfg, PretrainedCfg):
        cfg = model_or_cfg.to_dict()
    else:
        cfg = model_or_cfg
    defaults = PretrainedCfg()
    return {k: cfg.get(k, getattr(defaults, k)) for k in DATA_KEYS}


def _resized_hw(h: int, w: int, size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):  # short side, aspect kept (torchvision's rule)
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(size * long / short)
        return (size, new_long) if h <= w else (new_long, size)
    return int(size[0]), int(size[1])


class VideoClassificationTransform(nn.Module):
    """uint8 frames (T, H, W, C) or a batch (B, T, H, W, C) -> normalised float clips (B, C, T, crop, crop).

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
    ):
        super().__init__()
        self.resize_size = resize_size if resize_size is None or isinstance(resize_size, int) else tuple(resize_size)
        self.crop_size = crop_size
        self.interpolation = interpolation
        self.antialias = antialias
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() == 4:
            frames = frames.unsqueeze(0)
        if frames.dim() != 5 or frames.shape[-1] != self.mean.shape[1]:
            raise ValueError(
                f"expected frames as (T, H, W, C) or (B, T, H, W, C) with C={self.mean.shape[1]}, "
                f"got shape {tuple(frames.shape)}"
            )
        b, t, h, w, c = frames.shape
        x = frames.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w)
        is_uint8 = frames.dtype == torch.uint8
        x = x.float()
        if self.resize_size is not None:
            size = _resized_hw(h, w, self.resize_size)
            if size != (h, w):
                x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=self.antialias)
                if is_uint8:  # resized frames are uint8 again in the reference pipelines (torchvision, caffe2)
                    x = x.round_().clamp_(0, 255)
        x = _center_crop(x, self.crop_size)
        if is_uint8:
            x = x / 255.0
        x = x.reshape(b, t, c, self.crop_size, self.crop_size).transpose(1, 2)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def extra_repr(self) -> str:
        return (
            f"resize_size={self.resize_size}, crop_size={self.crop_size}, interpolation={self.interpolation}, "
            f"antialias={self.antialias}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
        )


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}-pixel crop; set a resize_size")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))  # torchvision center_crop
    return x[..., top : top + size, left : left + size]


def create_transform(
    model_or_cfg: Union[nn.Module, PretrainedCfg, Dict[str, Any], None] = None, **overrides: Any
) -> VideoClassificationTransform:
    """The evaluation transform of a model's weights (``overrides`` replace single fields)."""
    data = resolve_data_config(model_or_cfg) if model_or_cfg is not None else resolve_data_config({})
    data.update({k: v for k, v in overrides.items() if v is not None})
    return VideoClassificationTransform(
        data["resize_size"], data["crop_size"], data["mean"], data["std"], data["interpolation"], data["antialias"]
    )
