"""The PyAV decoder: seek to the preceding keyframe, decode only what a clip needs, sample by timestamps.

Times are seconds from the first frame of the video stream (streams that start at a non-zero pts are shifted), so
they work for variable frame rate files and for containers that report no frame count. Rotation metadata (the
display matrix) is applied.
"""

import errno
import io
import math
import os
from fractions import Fraction
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .reader import VideoDecodeError, VideoInfo, VideoReader
from .transforms import resize_frames, resized_hw

# Seek instead of decoding forward when the next clip starts this many seconds after the decoder's position.
SEEK_THRESHOLD_S = 1.0


# ---------------------------------------------------------------------------------------------------------------------
# Decoding


def _fail(path: str, what: str, error: BaseException) -> VideoDecodeError:
    if isinstance(error, FileNotFoundError):
        hint = "check the path"
    elif isinstance(error, PermissionError) or getattr(error, "errno", None) in (errno.EACCES, errno.EPERM):
        hint = "this user may not read it; fix its permissions (chmod a+r) or run as a user who can"
    elif isinstance(error, IsADirectoryError):
        hint = "it is a folder; a frame folder is read with --decoder frames"
    else:
        hint = "the file is corrupt, truncated or not a video; re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4)"
    return VideoDecodeError(f"{path}: {what}: {type(error).__name__}: {error} ({hint})")


def rgb_array(frame: Any, reformatter: Any, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """``frame`` (an ``av.VideoFrame``) as an (H, W, 3) uint8 RGB array, scaled by swscale (bilinear) to ``size``
    (H, W) when given.

    It converts through ``reformatter`` (an ``av.video.reformatter.VideoReformatter`` its reader owns) on one
    thread. ``frame.to_ndarray`` would use PyAV's reformatter shared per thread, which since PyAV 17 scales on slice
    threads over every core: a process forked after the parent converted a frame (a DataLoader worker) inherits that
    reformatter without its threads, and its first conversion waits for them forever. One thread is also what PyAV
    did before 17; beside decoding workers, more threads per reader would only oversubscribe the cores."""
    height, width = size if size is not None else (None, None)
    rgb = reformatter.reformat(frame, width, height, format="rgb24", interpolation="BILINEAR", threads=1)
    return rgb.to_ndarray()


def _decode_errors() -> Tuple[type, ...]:
    import av

    return (av.error.FFmpegError, OSError, EOFError)


class PyAVReader(VideoReader):
    """One open video. Clips read in time order (``iter_clips``) decode forward through overlapping or adjacent clips
    and seek over gaps.

    ``frame_size`` resizes inside the decoder (swscale, bilinear, behaves like antialiased resizing) to ``(H, W)`` or a
    short side; this is faster but does not reproduce the reference preprocessing of the published numbers, so it is
    opt-in. ``resize`` instead resizes each frame with torch (``interpolation``, ``antialias``) and rounds back to
    uint8, which matches :class:`r21d_zoo.VideoClassificationTransform`.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]", bytes],
        resize: Union[int, Tuple[int, int], None] = None,
        frame_size: Union[int, Tuple[int, int], None] = None,
        interpolation: str = "bilinear",
        antialias: bool = False,
        threads: Optional[str] = None,
    ):
        import av

        in_memory = isinstance(path, (bytes, bytearray, memoryview))
        self.path = f"<in-memory video, {len(path)} bytes>" if in_memory else str(path)
        self.resize = resize
        self.frame_size = frame_size
        self.interpolation = interpolation
        self.antialias = antialias
        try:
            self._container = av.open(io.BytesIO(path) if in_memory else self.path)
        except _decode_errors() as e:
            raise _fail(self.path, "cannot open", e) from e
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(
                    f"{self.path}: no video stream (streams: "
                    f"{[s.type for s in self._container.streams] or 'none'}); it is audio-only or not a video"
                )
            self._stream = self._container.streams.video[0]
            self._reformatter = av.video.reformatter.VideoReformatter()
            if threads:
                self._stream.thread_type = threads
            self._iter: Optional[Iterator] = None
            self._buffer: List[Tuple[float, object]] = []  # (time, av.VideoFrame) decoded, in time order
            self._cache: dict = {}  # id(frame) -> converted ndarray
            self._exhausted = False
            self._end: Optional[float] = None  # decoded end of the stream once reached
            self._start_pts = self._stream.start_time or 0
            s = self._stream  # average rate is right for variable frame rate files too; guessed is per-frame
            self._fps = float(s.average_rate or s.guessed_rate or s.base_rate or 0) or 30.0
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise

    # -- metadata -----------------------------------------------------------------------------------------------------
    def _probe(self) -> VideoInfo:
        s = self._stream
        tb = s.time_base
        start = s.start_time or 0
        duration = None
        if s.duration:
            duration = float(s.duration * tb)
        elif self._container.duration:
            duration = self._container.duration / 1e6 - float(start * tb)
        try:
            if not duration or duration <= 0:
                duration = self._scan_duration()
                self._container.seek(0)
            rotation = self._rotation()
        except _decode_errors() as e:
            raise _fail(self.path, "cannot decode the first frame", e) from e
        w, h = s.codec_context.width, s.codec_context.height
        if rotation % 180:
            w, h = h, w
        return VideoInfo(self.path, duration, self._fps, w, h, rotation, float(start * tb))

    def _scan_duration(self) -> float:
        """Demux (no decoding) to find the end of the last packet, for files whose headers carry no duration."""
        s, end, first = self._stream, None, None
        try:
            for packet in self._container.demux(s):
                if packet.pts is None:
                    continue
                first = packet.pts if first is None else min(first, packet.pts)
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
        except _decode_errors() as e:
            raise _fail(self.path, "cannot read packets", e) from e
        if end is None:
            raise VideoDecodeError(f"{self.path}: the video stream has no frames (zero-length video)")
        return float((end - (s.start_time if s.start_time is not None else first)) * s.time_base)

    def _rotation(self) -> int:
        """Rotation from the display matrix (FFmpeg 7) or the legacy ``rotate`` tag, as counter-clockwise degrees.

        The display matrix is only exposed on decoded frames, so this starts decoding and keeps the first frame."""
        self._iter = self._container.decode(self._stream)
        if not self._next_frame():
            raise VideoDecodeError(f"{self.path}: the video stream has no frames (zero-length video)")
        rotate = self._stream.metadata.get("rotate")
        if rotate is not None:
            return (-int(rotate)) % 360  # the legacy tag is clockwise
        return int(round(getattr(self._buffer[0][1], "rotation", 0) or 0)) % 360

    # -- frame access -------------------------------------------------------------------------------------------------
    def _convert(self, frame) -> np.ndarray:
        key = id(frame)
        if key not in self._cache:
            quarter = self.info.rotation // 90
            size = None
            if self.frame_size is not None:
                size = _target_hw(frame.height, frame.width, self.frame_size, quarter % 2 == 1)
            arr = rgb_array(frame, self._reformatter, size)
            if quarter:
                arr = np.ascontiguousarray(np.rot90(arr, k=quarter))
            if self.resize is not None:
                arr = resize_frames(torch.from_numpy(arr)[None], self.resize, self.interpolation, self.antialias)
                arr = arr[0].numpy()
            self._cache[key] = arr
        return self._cache[key]

    def _seek(self, t: float) -> None:
        s = self._stream
        target = int(math.floor(Fraction(t).limit_denominator(1 << 30) / s.time_base)) + (s.start_time or 0)
        self._container.seek(max(target, s.start_time or 0), stream=s, backward=True, any_frame=False)
        self._iter = self._container.decode(s)
        self._buffer, self._cache, self._exhausted = [], {}, False

    def _next_frame(self) -> bool:
        if self._exhausted:
            return False
        if self._iter is None:
            self._iter = self._container.decode(self._stream)
        while True:
            try:
                frame = next(self._iter)
            except StopIteration:
                self._exhausted = True
                if self._buffer:
                    t_last = self._buffer[-1][0]
                    self._end = max(t_last + 1.0 / self._fps, self._end or 0.0)
                return False
            if frame.pts is None:
                continue
            t = float((frame.pts - self._start_pts) * self._stream.time_base)
            if self._buffer and t <= self._buffer[-1][0]:  # B-frame reordering artefacts after a seek
                continue
            self._buffer.append((t, frame))
            return True

    def _fill_until(self, t: float) -> None:
        """Decode until a frame after ``t`` is buffered or the stream ends."""
        while not self._buffer or self._buffer[-1][0] <= t:
            if not self._next_frame():
                return

    def _drop_before(self, t: float) -> None:
        """Forget frames that no clip starting at ``t`` or later can use (keep the latest frame at or before ``t``)."""
        keep = 0
        for i, (ft, _) in enumerate(self._buffer):
            if ft <= t:
                keep = i
        for _, frame in self._buffer[:keep]:
            self._cache.pop(id(frame), None)
        del self._buffer[:keep]

    def _position_for(self, t: float) -> None:
        """Make the buffer hold the frame shown at time ``t``, seeking when decoding forward would be wasteful."""
        if self._iter is None:
            if t > SEEK_THRESHOLD_S:
                self._seek(t)
        elif (self._buffer and self._buffer[0][0] > t + 1e-6) or self._far_ahead(t):
            self._seek(t)
        self._fill_until(t)
        self._drop_before(t)

    def _far_ahead(self, t: float) -> bool:
        return bool(self._buffer) and not self._exhausted and t - self._buffer[-1][0] > SEEK_THRESHOLD_S

    def _read(
        self, start: float, num_frames: int, frame_rate: Optional[float], sampling_stride: int
    ) -> Tuple[torch.Tensor, np.ndarray]:
        try:
            self._position_for(start)
            if frame_rate is not None:
                targets = start + np.arange(num_frames) * sampling_stride / frame_rate
                picked = self._pick_times(targets)
            else:
                picked = self._pick_consecutive(start, num_frames, sampling_stride)
        except _decode_errors() as e:
            where = self._buffer[-1][0] if self._buffer else start  # the last frame that did decode
            raise _fail(self.path, f"decoding failed after {where:.2f}s", e) from e
        if not picked:
            return torch.empty(0), np.empty(0)
        frames = torch.from_numpy(np.stack([self._convert(f) for _, f in picked]))
        return frames, np.array([t for t, _ in picked], dtype=np.float64)

    def _extent(self) -> str:
        decoded = f"{self._end:.3f}" if self._end is not None else "unknown"
        return f"decoded duration {decoded}s, reported {self.info.duration:.3f}s"

    def _pick_times(self, targets: np.ndarray) -> List[Tuple[float, object]]:
        picked: List[Tuple[float, object]] = []
        eps = 1e-3 / self._fps
        for target in targets:
            self._fill_until(target + eps)
            if self._exhausted and self._end is not None and target >= self._end - eps:
                break
            candidates = [x for x in self._buffer if x[0] <= target + eps]
            picked.append(candidates[-1] if candidates else self._buffer[0])
        return picked

    def _pick_consecutive(self, start: float, num_frames: int, stride: int) -> List[Tuple[float, object]]:
        eps = 0.5 / self._fps
        first = next((i for i, (t, _) in enumerate(self._buffer) if t >= start - eps), None)
        if first is None:
            self._next_frame()
            first = len(self._buffer) - 1 if not self._exhausted else None
            if first is None:
                return []
        need = first + (num_frames - 1) * stride
        while len(self._buffer) <= need and self._next_frame():
            pass
        return self._buffer[first : need + 1 : stride]

    def frames(self) -> Iterator[Tuple[float, np.ndarray]]:
        """Every frame from the start, in order, with its time (resized and rotated as the reader says), one at a
        time: for re-encoding a whole video without holding it."""
        try:
            self._seek(0.0)
            while self._next_frame():
                t, frame = self._buffer[-1]
                yield t, self._convert(frame)
                self._cache.clear()
                del self._buffer[:-1]
        except _decode_errors() as e:
            raise _fail(self.path, "decoding failed", e) from e

    def close(self) -> None:
        self._buffer, self._cache, self._iter = [], {}, None
        self._container.close()


def _target_hw(h: int, w: int, size: Union[int, Sequence[int]], swapped: bool) -> Tuple[int, int]:
    """Decoder output size for a stored ``h x w`` frame so that, after a quarter-turn rotation, it has ``size``."""
    oh, ow = resized_hw(h, w, size)
    return (ow, oh) if swapped and not isinstance(size, int) else (oh, ow)
