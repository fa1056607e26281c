"""The decoder seam: a small reader protocol and :func:`open_video`, the only constructor the rest of the package uses.

A decoder is a :class:`VideoReader` subclass that implements ``info``, ``read_clip`` and ``close``; times are seconds
from the first frame of the video stream, frames are uint8 (T, H, W, 3) RGB after rotation, and a clip that runs past
the end is padded (``repeat`` the last frame or ``loop`` the clip) with the padded count reported. Backends register
in ``DECODERS`` by module path, so an optional one costs nothing until it is asked for.
"""

import functools
import importlib
import math
import os
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..models import ClipSpec

PAD_MODES = ("repeat", "loop")
from .._options import DECODERS as DECODERS, DEFAULT_DECODER as DEFAULT_DECODER
from .._options import FRAMES_DECODER as FRAMES_DECODER, VIDEO_EXTENSIONS as VIDEO_EXTENSIONS

PathLike = Union[str, "os.PathLike[str]"]
VideoSource = Union[str, "os.PathLike[str]", bytes]  # a file, or a whole encoded video in memory (a shard member)


def check_pad(pad: str) -> None:
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")


def pad_order(found: int, num_frames: int, pad: str) -> List[int]:
    """Which of ``found`` decoded frames fills each of ``num_frames`` positions: all of them in order, then the last
    one again (``repeat``) or the clip from its start again (``loop``)."""
    if pad == "repeat":
        return list(range(found)) + [found - 1] * (num_frames - found)
    return [i % found for i in range(num_frames)]


def _cut_at(clip: "ClipFrames", end: float, lead: int, pad: str) -> "ClipFrames":
    """``clip`` with its decoded frames at or after ``end`` replaced by padding (the first one is always kept)."""
    real = len(clip.times) - (clip.num_padded - lead)  # lead positions, then decoded frames, then padding
    keep = max(1, min(real, int(np.count_nonzero(clip.times[:real] < end - 1e-6))))
    if keep == real:
        return clip
    order = pad_order(keep, len(clip.times), pad)
    return ClipFrames(clip.frames[order], clip.times[order], lead + len(clip.times) - keep)


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded; the message names the file, the cause and what to do."""


class DecoderUnavailableError(RuntimeError):
    """A decoder cannot run on this machine (not installed, or its system libraries are missing): a fault
    of the set-up, not of any video, so jobs refuse it before any work; the message says what to install."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration: float  # seconds covered by the video stream (last frame's end), from metadata or a packet scan
    fps: float  # the stream's average native frame rate
    width: int  # display size, i.e. after rotation
    height: int
    rotation: int  # counter-clockwise degrees applied to decoded frames
    start_time: float  # pts of the first frame, seconds (subtracted from all times)


class Clip(NamedTuple):
    """A clip's time span in seconds, end exclusive. ``index`` is its position in the sampler's list."""

    start: float
    end: float
    index: int


class ClipFrames(NamedTuple):
    frames: torch.Tensor  # uint8 (T, H, W, 3)
    times: np.ndarray  # float64 (T,): the time of the frame shown at each position
    num_padded: int  # positions filled by padding: after the end (the pad rule), or before 0 s (the first frame)


class VideoReader(ABC):
    """One open video (a context manager). Backends implement ``info``, ``read_clip`` and ``close``; one that can
    decode on a GPU lists ``"cuda"`` in ``devices`` and takes a ``device`` argument."""

    info: VideoInfo
    devices: Tuple[str, ...] = ("cpu",)

    @classmethod
    def check_usable(cls) -> None:
        """Raise :class:`DecoderUnavailableError` if this decoder cannot decode here (an optional one loads
        itself and decodes a tiny video); decoders that ship with the package need not override it."""

    def read_clip(
        self,
        start: float,
        num_frames: int,
        frame_rate: Optional[float] = None,
        sampling_stride: int = 1,
        pad: str = "repeat",
    ) -> ClipFrames:
        """``num_frames`` frames from ``start`` seconds: resampled to ``frame_rate`` (for each target time the latest
        frame shown at that time) or, with ``frame_rate=None``, consecutive native frames, taking every
        ``sampling_stride``-th. Positions past the end of the video are filled by ``pad``. The template every decoder
        shares: its :meth:`_read` finds the frames, the padding and the error for none are done here."""
        check_pad(pad)
        frames, times = self._read(start, num_frames, frame_rate, sampling_stride)
        if not len(times):
            raise VideoDecodeError(f"{self.path}: no frames at or after {start:.3f}s ({self._extent()})")
        num_padded = num_frames - len(times)
        if num_padded:
            order = pad_order(len(times), num_frames, pad)
            frames, times = frames[order], times[order]
        return ClipFrames(frames, np.asarray(times, dtype=np.float64), num_padded)

    @abstractmethod
    def _read(
        self, start: float, num_frames: int, frame_rate: Optional[float], stride: int
    ) -> Tuple[torch.Tensor, np.ndarray]:
        """The clip's frames that the video has (up to ``num_frames``, none past its end): uint8 (k, H, W, C) as the
        reader resizes them, and their times; a decoding failure as :class:`VideoDecodeError`."""

    def _extent(self) -> str:
        """How long the video is, for the error of a clip that starts after it."""
        return f"the video lasts {self.info.duration:.3f}s"

    @abstractmethod
    def close(self) -> None: ...

    def read_spec_clip(
        self, start: float, spec: ClipSpec, pad: str = "repeat", end: Optional[float] = None
    ) -> ClipFrames:
        """The frames of ``spec``'s clip (frames, rate, stride; for flow, :meth:`ClipSpec.frames_to_read`) starting at
        ``start``. A clip that starts before the video (a window centred near 0 s) has its positions before 0 s
        filled with the first frame, counted in ``num_padded`` as the padding at the end is. With ``end`` (a
        segment's end), frames at or after it are not the segment's: they are padded by ``pad`` and counted too."""
        num_frames, stride = spec.frames_to_read()
        step = stride / (spec.frame_rate or self.info.fps)
        lead = min(num_frames - 1, math.ceil(-start / step - 1e-6)) if start < 0 else 0
        clip = self.read_clip(max(0.0, start + lead * step), num_frames - lead, spec.frame_rate, stride, pad)
        if lead:
            frames = torch.cat([clip.frames[:1].expand(lead, *clip.frames.shape[1:]), clip.frames])
            times = np.concatenate([np.full(lead, clip.times[0]), clip.times])
            clip = ClipFrames(frames, times, clip.num_padded + lead)
        return clip if end is None else _cut_at(clip, end, lead, pad)

    def iter_clips(
        self, clips: Sequence[Clip], spec: ClipSpec, pad: str = "repeat", end: Optional[float] = None
    ) -> Iterator[Tuple[Clip, ClipFrames]]:
        """Decode ``clips`` in start order (decoders decode forward through clips that are close together); ``end``:
        see :meth:`read_spec_clip`."""
        for clip in sorted(clips, key=lambda c: c.start):
            yield clip, self.read_spec_clip(clip.start, spec, pad, end)

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reader_class(decoder: str) -> type:
    if decoder not in DECODERS:
        raise ValueError(f"unknown video decoder {decoder!r}; available: {', '.join(DECODERS)}")
    module, _, name = DECODERS[decoder].partition(":")
    return getattr(importlib.import_module(module), name)


@functools.lru_cache(maxsize=None)
def _unusable_reason(decoder: str) -> Optional[str]:
    check = getattr(reader_class(decoder), "check_usable", None)  # a decoder need not subclass VideoReader
    try:
        if check is not None:
            check()
    except DecoderUnavailableError as e:
        return str(e)
    return None


def check_decoder(decoder: str) -> None:
    """Raise :class:`DecoderUnavailableError` if ``decoder`` cannot decode on this machine. The answer comes from
    actually loading it (once per process, then cached): an optional decoder can import and still fail at its
    first frame when the system libraries it loads lazily are missing."""
    reason = _unusable_reason(decoder)
    if reason is not None:
        raise DecoderUnavailableError(reason)


def renamed(function: str, old: str, old_value: Any, new: str, value: Any) -> Any:
    """``old_value`` when the caller used the deprecated keyword ``old`` (with a warning), else ``value``."""
    if old_value is None:
        return value
    warnings.warn(
        f"{function}({old}=...) is deprecated and will be removed in the next release; use {new}=",
        FutureWarning,
        stacklevel=3,
    )
    return old_value


@dataclass(frozen=True)
class DecodeOptions:
    """How videos are decoded, one value passed whole from a command to every reader: the decoder, the frame rate of
    frame folders whose item does not carry one (see :mod:`r21d_zoo.video.frames`), and resizing inside the decoder
    (faster, but not the reference preprocessing)."""

    decoder: str = DEFAULT_DECODER
    frames_fps: Optional[float] = None
    fast_resize: bool = False

    def open(
        self,
        source: VideoSource,
        spec: Optional[ClipSpec] = None,
        device: Union[str, torch.device, None] = None,
        frames_fps: Optional[float] = None,
    ) -> VideoReader:
        """:func:`open_video` with these options; ``frames_fps``: an item's own rate, which wins over the default."""
        fps = frames_fps or self.frames_fps
        return open_video(source, spec, self.decoder, self.fast_resize, device, frames_fps=fps)

    def decode_device(self, device: torch.device) -> Optional[torch.device]:
        """The GPU to decode on: ``device``, when the decoder can decode there (torchcodec's NVDEC); else None."""
        return device if device.type != "cpu" and device.type in reader_class(self.decoder).devices else None


def open_video(
    path: VideoSource,
    spec: Optional[ClipSpec] = None,
    decoder: str = DEFAULT_DECODER,
    fast_resize: bool = False,
    device: Union[str, torch.device, None] = None,
    *,
    frames_fps: Optional[float] = None,
    backend: Optional[str] = None,
    decoder_resize: Optional[bool] = None,
) -> VideoReader:
    """Open ``path`` with a decoder. With ``spec``, frames come resized as the spec says (``resize_size``,
    ``interpolation``, ``antialias``, rounded back to uint8 like the evaluation transform); ``fast_resize`` resizes
    inside the decoder instead (faster, but not the reference preprocessing the published accuracies used).
    ``device`` (a decoder that decodes on GPUs) is where frames are decoded and returned; default the CPU. A decoder
    that cannot run here raises :class:`DecoderUnavailableError` (see :func:`check_decoder`). A folder is a frame
    folder, read by the ``frames`` decoder whichever is named, at ``frames_fps`` (see :mod:`r21d_zoo.video.frames`).
    ``backend`` and ``decoder_resize`` are the deprecated names of ``decoder`` and ``fast_resize``."""
    decoder = renamed("open_video", "backend", backend, "decoder", decoder)
    fast_resize = renamed("open_video", "decoder_resize", decoder_resize, "fast_resize", fast_resize)
    if not isinstance(path, (bytes, bytearray, memoryview)) and os.path.isdir(path):
        decoder = FRAMES_DECODER
    reader_cls = reader_class(decoder)
    check_decoder(decoder)
    kwargs: Dict[str, object] = dict(fps=frames_fps) if decoder == FRAMES_DECODER else {}
    if device is not None and torch.device(device).type != "cpu":
        if torch.device(device).type not in getattr(reader_cls, "devices", ("cpu",)):
            raise ValueError(f"the {decoder} decoder cannot decode on {device}; use --decoder torchcodec for GPUs")
        kwargs["device"] = device
    if spec is None or spec.resize_size is None:
        return reader_cls(path, **kwargs)
    if fast_resize:
        return reader_cls(path, frame_size=spec.resize_size, **kwargs)
    return reader_cls(
        path, resize=spec.resize_size, interpolation=spec.interpolation, antialias=spec.antialias, **kwargs
    )


def read_clip(
    path: PathLike,
    start: float,
    num_frames: Optional[int] = None,
    spec: Optional[ClipSpec] = None,
    decoder: str = DEFAULT_DECODER,
    pad: str = "repeat",
    *,
    backend: Optional[str] = None,
    **overrides: object,
) -> ClipFrames:
    """Open ``path``, read one clip and close it. The clip is ``spec`` (default: ``ClipSpec(resize_size=None)``, native
    frames) with ``num_frames`` and any other ClipSpec field in ``overrides`` replaced."""
    decoder = renamed("read_clip", "backend", backend, "decoder", decoder)
    spec = ClipSpec.from_model(spec or ClipSpec(resize_size=None), num_frames=num_frames, **overrides)
    with open_video(path, spec, decoder) as reader:
        return reader.read_spec_clip(start, spec, pad)
