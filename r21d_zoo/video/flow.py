"""Optical flow behind one seam: cropped uint8 RGB frames in, (dx, dy) flow in pixels out.

The VMZ flow weights (``r2plus1d_34.sports1m_ft_kinetics400_flow_32f``) were trained on what caffe2's ``VideoInput``
op computes by default, since VMZ never sets ``flow_alg_type`` (its extraction script passes ``flow_data_type=0
frame_gap_of=1 do_flow_aggregation=1``): algorithm 0, OpenCV's Farneback with ``pyr_scale=sqrt(2)/2, levels=5,
winsize=10, iterations=2, poly_n=7, poly_sigma=1.5, OPTFLOW_FARNEBACK_GAUSSIAN`` on the **cropped 112x112 grey**
frames (``cv::cvtColor(RGB2GRAY)`` after the crop and any flip), one flow per consecutive pair, float pixels at crop
scale with no clipping or quantisation, then normalised per channel by the weights' mean/std
(``caffe2/video/video_io.cc::ClipTransformOpticalFlow``, ``optical_flow.cc``). ``farneback`` reproduces that; small
differences from the OpenCV revision and the decoder's resize remain.

``raft_small`` / ``raft_large`` run torchvision's RAFT (its Sintel/KITTI-tuned ``C_T_V2`` / ``C_T_SKHT_V2``
weights, fetched and hash-checked like every other weight, offline rules included) on the same cropped frames:
fast on GPUs, but not the flow the VMZ weights were trained on.
"""

import functools
import math
from typing import Callable, Dict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import FLOW_METHODS, WeightsError, cached_path, download_url, load_weights_only

# caffe2/video/optical_flow.cc, FLowAlgType 0
FARNEBACK = dict(pyr_scale=0.5**0.5, levels=5, winsize=10, iterations=2, poly_n=7, poly_sigma=1.5)
RAFT_ITERATIONS = 12  # torchvision's and upstream RAFT's default number of flow updates
RAFT_MIN_SIDE = 128  # RAFT's correlation pyramid needs feature maps (1/8 of the input) of at least 16 pixels

_CV2_MISSING = (
    "farneback flow needs OpenCV: pip install opencv-python-headless (or pip install 'r21d_zoo[flow]'); "
    "--flow-method raft_small or raft_large use torchvision's RAFT instead"
)


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise ImportError(_CV2_MISSING) from e
    return cv2


def farneback_flow(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) -> float32 (N - 1, 2, H, W): Farneback flow from each frame to the next, with caffe2's
    parameters, on grey frames (OpenCV's RGB2GRAY)."""
    cv2 = _cv2()
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in np.ascontiguousarray(frames)]
    out = np.empty((len(grey) - 1, 2) + grey[0].shape, dtype=np.float32)
    for i in range(len(grey) - 1):
        flow = cv2.calcOpticalFlowFarneback(
            grey[i], grey[i + 1], None, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN, **FARNEBACK
        )
        out[i] = flow.transpose(2, 0, 1)
    return out


def _raft_weights(method: str):
    from torchvision.models import optical_flow

    return (optical_flow.Raft_Small_Weights if method == "raft_small" else optical_flow.Raft_Large_Weights).DEFAULT


@functools.lru_cache(maxsize=4)
def raft_model(method: str, device: str) -> nn.Module:
    """torchvision's RAFT with its default weights, downloaded once into the torch hub cache (sha256 prefix from the
    file name, as torchvision publishes it), read with ``weights_only``."""
    from torchvision.models import optical_flow

    url = _raft_weights(method).url
    try:
        path = download_url(url, hash_prefix=url.rsplit("-", 1)[1].split(".")[0])
    except OSError as e:  # offline, unreachable
        raise WeightsError(
            f"could not fetch the weights of --flow-method {method} ({e}). Offline: download {url} elsewhere and put "
            f"it at {cached_path(url)}, or compute flow with --flow-method farneback (CPU, no weights)."
        ) from e
    build = optical_flow.raft_small if method == "raft_small" else optical_flow.raft_large
    model = build(weights=None, progress=False)
    model.load_state_dict(load_weights_only(path))
    return model.eval().requires_grad_(False).to(device)


def raft_flow(frames: torch.Tensor, method: str = "raft_large") -> torch.Tensor:
    """uint8 or integer-valued float RGB (N, 3, H, W) on any device -> float32 (N - 1, 2, H, W) flow in pixels from
    each frame to the next. Frames are scaled to [-1, 1] and padded (replicate, evenly) to multiples of 8, as RAFT's
    ``InputPadder`` does, and the padding is cut from the flow; frames with a side under ``RAFT_MIN_SIDE`` (a 112
    crop) are first upsampled (bilinear) to it, and the flow is resized back and rescaled to the frames' pixels."""
    model = raft_model(method, str(frames.device))
    x = frames.float() / 127.5 - 1.0
    h, w = x.shape[-2:]
    scale = RAFT_MIN_SIDE / min(h, w)
    if scale > 1:
        size = (8 * math.ceil(h * scale / 8), 8 * math.ceil(w * scale / 8))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        flow = model(x[:-1], x[1:], num_flow_updates=RAFT_ITERATIONS)[-1].float()
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        return flow * torch.tensor([w / size[1], h / size[0]], device=flow.device).view(1, 2, 1, 1)
    ph, pw = -h % 8, -w % 8
    x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
    flow = model(x[:-1], x[1:], num_flow_updates=RAFT_ITERATIONS)[-1]
    return flow[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w].float()


def _farneback_tensor(frames: torch.Tensor) -> torch.Tensor:
    if frames.dtype != torch.uint8:
        frames = frames.round().clamp(0, 255).to(torch.uint8)
    array = frames.permute(0, 2, 3, 1).cpu().numpy()
    return torch.from_numpy(farneback_flow(array)).to(frames.device)


FLOW_FUNCTIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "farneback": _farneback_tensor,
    "raft_small": functools.partial(raft_flow, method="raft_small"),
    "raft_large": functools.partial(raft_flow, method="raft_large"),
}


def clip_flow(frames: torch.Tensor, num_frames: int, stride: int = 1, method: str = "farneback") -> torch.Tensor:
    """Cropped clips of RGB frames (B, N, 3, H, W), uint8 or integer-valued float, as read for
    :meth:`ClipSpec.frames_to_read` -> float32 flow in pixels (B, 2, num_frames, H, W): position l is the flow from
    frame l * stride to frame l * stride + 1."""
    if method not in FLOW_FUNCTIONS:
        raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")
    b, n = frames.shape[:2]
    needed = (num_frames - 1) * stride + 2
    if n < needed:
        raise ValueError(f"{num_frames} flow frames at stride {stride} need {needed} frames, got {n}")
    first = torch.arange(num_frames, device=frames.device) * stride
    pairs = torch.stack([first, first + 1], 1)  # (T, 2)
    compute = FLOW_FUNCTIONS[method]
    out = []
    for clip in frames:
        if stride == 1:
            flow = compute(clip[: num_frames + 1])
        else:  # separate pairs: each computed on its own
            flow = torch.cat([compute(clip[p]) for p in pairs])
        out.append(flow)
    return torch.stack(out).transpose(1, 2).contiguous()  # (B, 2, T, H, W)
