"""Clip samplers: where clips start in a video. All return :class:`Clip` spans in seconds."""

import math
from typing import List, Optional

import torch

from .reader import Clip


def _last_start(duration: float, frame_period: float) -> float:
    """The latest time a window may start: before the final half frame (a window starting there would hold no frame
    of its own; containers round their durations, e.g. 2.0005 s for 30 frames at 15 fps)."""
    return duration - max(frame_period / 2, 1e-6)


def sliding_clips(
    duration: float, clip_len: float, stride: Optional[float] = None, frame_period: float = 0.0
) -> List[Clip]:
    """Windows of ``clip_len`` seconds every ``stride`` seconds (default: back to back) covering the whole video.

    The last window may run past the end (it is padded when decoded); a video shorter than one window gives one clip.
    A window never starts in the video's final half frame (``frame_period``: 1 / fps) or after it (a stride longer
    than the window leaves gaps, the last one too).
    """
    stride = clip_len if stride is None else stride
    if clip_len <= 0 or stride <= 0:
        raise ValueError(f"clip length and stride must be positive, got {clip_len} and {stride}")
    last = _last_start(duration, frame_period)
    clips, start, i = [], 0.0, 0
    while True:
        clips.append(Clip(start, start + clip_len, i))
        if start + clip_len >= duration - 1e-6:
            return clips
        i += 1
        start = i * stride
        if start >= last:
            return clips


def fixed_rate_clips(
    duration: float, clip_len: float, step: float, centered: bool = False, frame_period: float = 0.0
) -> List[Clip]:
    """One window per output time ``i * step`` before the video's final half frame (at least one): starting there,
    or ``centered`` on it (the first windows then start before 0 s and the last end after the video; both are padded
    when decoded). The count, ``ceil(last / step)`` with ``last`` = duration - frame_period / 2, does not depend on
    the window's length."""
    if clip_len <= 0 or step <= 0:
        raise ValueError(f"clip length and step must be positive, got {clip_len} and {step}")
    count = max(1, math.ceil(_last_start(duration, frame_period) / step - 1e-9))
    shift = clip_len / 2 if centered else 0.0
    return [Clip(i * step - shift, i * step - shift + clip_len, i) for i in range(count)]


def uniform_clips(duration: float, clip_len: float, num_clips: int) -> List[Clip]:
    """``num_clips`` evenly spaced clips from the start to the end (the papers' 10-clip test); one clip is centred."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    span = max(0.0, duration - clip_len)
    if num_clips == 1:
        starts = [span / 2]
    else:
        starts = [span * i / (num_clips - 1) for i in range(num_clips)]
    return [Clip(s, s + clip_len, i) for i, s in enumerate(starts)]


def random_clip(duration: float, clip_len: float, generator: Optional[torch.Generator] = None) -> Clip:
    """One clip with a uniformly random start in ``[0, duration - clip_len]`` (temporal jitter for training)."""
    span = max(0.0, duration - clip_len)
    start = float(torch.rand((), generator=generator)) * span
    return Clip(start, start + clip_len, 0)
