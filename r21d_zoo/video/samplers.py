"""Clip samplers: where clips start in a video. All return :class:`Clip` spans in seconds."""

from typing import List, Optional

import torch

from .reader import Clip


def sliding_clips(duration: float, clip_len: float, stride: Optional[float] = None) -> List[Clip]:
    """Windows of ``clip_len`` seconds every ``stride`` seconds (default: back to back) covering the whole video.

    The last window may run past the end (it is padded when decoded); a video shorter than one window gives one clip.
    A window never starts at or after the end (a stride longer than the window leaves gaps, the last one too).
    """
    stride = clip_len if stride is None else stride
    if clip_len <= 0 or stride <= 0:
        raise ValueError(f"clip length and stride must be positive, got {clip_len} and {stride}")
    eps = 1e-6
    clips, start, i = [], 0.0, 0
    while True:
        clips.append(Clip(start, start + clip_len, i))
        if start + clip_len >= duration - eps:
            return clips
        i += 1
        start = i * stride
        if start >= duration - eps:
            return clips


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
