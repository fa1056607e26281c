"""Live sources: a camera, a network stream or standard input, read as it arrives into a rolling buffer.

:class:`LiveSource` is a :class:`~r21d_zoo.video.reader.VideoReader` whose video has no end yet: a thread decodes the
source with PyAV, resizes each frame as the file readers do, and keeps the last ``keep_seconds`` of frames with their
stream times and arrival times; :meth:`LiveSource.read_spec_clip` picks a clip's frames from that buffer by the file
readers' rule (for each target time, the latest frame shown at it), so a window of a stream is the window of the same
video read from a file. Times start at the first frame and run on across reconnects. A network source that drops is
opened again up to ``reconnect`` times in a row, waiting 0.5, 1, 2, ... s (at most 10 s) between attempts; the end
of a file or a pipe ends the source.

Sources: ``/dev/videoN`` (Linux cameras, through FFmpeg's v4l2 input), ``FORMAT:DEVICE`` for another FFmpeg input
device (``avfoundation:0`` on macOS, ``dshow:video=Integrated Camera`` on Windows), ``rtsp://``, ``rtmp://``,
``http(s)://`` (HLS playlists too), ``udp://``, ``tcp://``, ``srt://``, or ``-`` for a container stream (MPEG-TS,
Matroska, ...) on standard input.
"""

import collections
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, Deque, Optional, Tuple

import numpy as np
import torch

from .._errors import InputError
from ..models import ClipSpec
from .pyav import rgb_array
from .reader import VideoInfo, VideoReader
from .transforms import resize_frames

_logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
DEVICE_FORMATS = ("v4l2", "video4linux2", "avfoundation", "dshow", "x11grab", "gdigrab", "kmsgrab", "lavfi")
MAX_BACKOFF_S = 10.0


def check_live_source(source: str) -> None:
    """Refuse, before any work, a source that names nothing readable: not a device, URL or ``-``, or a camera
    device that does not exist."""
    kind = _kind(source)
    if kind is None:
        raise InputError(
            f"--live {source}: not a live source; give a camera (/dev/videoN, or FORMAT:DEVICE such as "
            f"avfoundation:0), a stream URL ({', '.join(s[:-3] for s in STREAM_SCHEMES)}) or - for standard input"
        )
    if kind == "v4l2" and not Path(source).exists():
        raise InputError(
            f"--live {source}: no such camera device ({source} does not exist); see which cameras this machine has "
            "with `ls /dev/video*`, or give a stream URL"
        )


def _kind(source: str) -> Optional[str]:
    """``v4l2``, another device format, ``stream``, ``stdin`` or None."""
    if source == "-":
        return "stdin"
    if source.startswith("/dev/video"):
        return "v4l2"
    if source.lower().startswith(STREAM_SCHEMES):
        return "stream"
    head, sep, _ = source.partition(":")
    return head if sep and head in DEVICE_FORMATS else None


class FrameBuffer(VideoReader):
    """The last seconds of a stream's frames (resized by ``spec``), each with its stream time and arrival time, read
    as a video by the file readers' rule; whoever has the frames (:class:`LiveSource`'s thread, a web page's
    webcam) hands them to :meth:`add`. It keeps two of ``spec``'s clips at ``fps`` (the stream's rate) and
    ``keep_extra`` s more. Thread-safe."""

    def __init__(
        self, name: str, spec: ClipSpec, fps: float, size: Tuple[int, int] = (0, 0), keep_extra: float = 1.0
    ) -> None:
        self.path, self.spec = name, spec
        self.info = VideoInfo(name, float("inf"), fps, size[1], size[0], 0, 0.0)
        self.keep_seconds = 2 * spec.clip_seconds(fps) + keep_extra
        self.ended: Optional[str] = None  # why the stream ended, once it has
        self._frames: Deque[Tuple[float, float, np.ndarray]] = collections.deque()  # (time, arrival, frame)
        self._cond = threading.Condition()
        self._last = -1.0

    def add(self, t: float, frame: np.ndarray) -> None:
        """Take the RGB frame shown at ``t`` s (uint8 H x W x 3), resized here; one at or before the last is dropped."""
        if t <= self._last:
            return  # a repeated or reordered frame
        if self.spec.resize_size is not None:
            size, spec = self.spec.resize_size, self.spec
            pixels = torch.from_numpy(frame if frame.flags.writeable else frame.copy())  # a web page's are read-only
            frame = resize_frames(pixels[None], size, spec.interpolation, spec.antialias)[0].numpy()
        with self._cond:
            self._frames.append((t, time.monotonic(), frame))
            while self._frames and self._frames[0][0] < t - self.keep_seconds:
                self._frames.popleft()
            self._last = t
            self._cond.notify_all()

    def end(self, reason: str) -> None:
        with self._cond:
            self.ended = reason
            self._cond.notify_all()

    # -- what the consumer sees ---------------------------------------------------------------------------------------
    def wait_past(self, t: float, timeout: Optional[float] = None) -> Optional[float]:
        """Wait until a frame at or after ``t`` seconds has arrived; the latest frame's time, or None once the source
        has ended without one (or ``timeout`` passed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._last >= t or self.ended is not None, timeout)
            return self._last if self._last >= t else None

    def arrival(self, t: float) -> float:
        """When (``time.monotonic()``) the first frame at or after ``t`` arrived."""
        with self._cond:
            return next((a for ft, a, _ in self._frames if ft >= t), time.monotonic())

    @property
    def latest(self) -> float:
        """The time of the latest frame (-1 before any)."""
        return self._last

    def _read(
        self, start: float, num_frames: int, frame_rate: Optional[float], sampling_stride: int
    ) -> Tuple[torch.Tensor, np.ndarray]:
        with self._cond:
            if not self._frames:
                return torch.empty(0), np.empty(0)
            times = np.array([t for t, _, _ in self._frames])
            eps = 1e-3 / self.info.fps
            if frame_rate is not None:
                targets = start + np.arange(num_frames) * sampling_stride / frame_rate
                targets = targets[targets <= times[-1] + eps]
                index = np.maximum(np.searchsorted(times, targets + eps, side="right") - 1, 0)
            else:
                first = int(np.searchsorted(times, start - 0.5 / self.info.fps))
                index = np.arange(first, len(times))[: (num_frames - 1) * sampling_stride + 1 : sampling_stride]
            if not len(index):
                return torch.empty(0), np.empty(0)
            frames = [self._frames[i][2] for i in index]
        return torch.from_numpy(np.stack(frames)), times[index]

    def _extent(self) -> str:
        return f"the buffer holds {self._frames[0][0]:.3f}-{self._last:.3f}s" if self._frames else "no frames yet"

    def close(self) -> None:
        self.end("closed")


class LiveSource(FrameBuffer):
    """A live source read into a :class:`FrameBuffer` by a thread (see the module docstring); a context manager that
    stops it. ``timeout`` bounds opening and each read of a network source."""

    def __init__(
        self, source: str, spec: ClipSpec, keep_extra: float = 1.0, reconnect: int = 3, timeout: float = 10.0
    ) -> None:
        import av

        check_live_source(source)
        self.path, self.kind, self.reconnect, self.timeout = source, _kind(source), reconnect, timeout
        self.reconnects = 0  # attempts made, over the whole run
        self.lost = False  # it ended because a network source did not come back within ``reconnect`` attempts
        self._stop = threading.Event()
        self._offset: Optional[float] = None  # added to a connection's own times, so time runs on across reconnects
        container = self._open()  # an unusable source fails here, in the caller
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0) or 30.0
        super().__init__(source, spec, fps, (stream.height, stream.width), keep_extra)
        self._reformatter = av.video.reformatter.VideoReformatter()
        self._thread = threading.Thread(target=self._run, args=(container,), name="r21d-live-source", daemon=True)
        self._thread.start()

    # -- reading ------------------------------------------------------------------------------------------------------
    def _open(self) -> Any:
        import av

        kind, options = self.kind, {}
        try:
            if kind == "stdin":
                container = av.open(sys.stdin.buffer, mode="r")
            elif kind == "stream":
                if self.path.lower().startswith(("rtsp://", "rtsps://")):
                    options["rtsp_transport"] = "tcp"
                container = av.open(self.path, options=options, timeout=(self.timeout, self.timeout))
            else:
                fmt, device = ("v4l2", self.path) if kind == "v4l2" else self.path.split(":", 1)
                container = av.open(device, format=fmt, timeout=self.timeout)
        except (OSError, av.FFmpegError) as e:
            raise InputError(f"--live {self.path}: cannot open it ({type(e).__name__}: {e})") from e
        if not container.streams.video:
            container.close()
            raise InputError(f"--live {self.path}: the source has no video stream")
        container.streams.video[0].thread_type = "AUTO"
        return container

    def _run(self, container: Any) -> None:
        import av

        attempts = 0
        while True:
            reason = "end of stream"
            if container is not None:
                try:
                    stream = container.streams.video[0]
                    first = True
                    for frame in container.decode(stream):
                        if self._stop.is_set():
                            break
                        self._add(frame, stream, first)
                        first, attempts = False, 0  # frames come: the connection works
                except (OSError, av.FFmpegError, ValueError) as e:
                    reason = f"{type(e).__name__}: {e}"
                finally:
                    container.close()
            if self._stop.is_set() or self.kind != "stream" or attempts >= self.reconnect:
                self.lost = attempts > 0 and not self._stop.is_set()
                break
            attempts += 1
            self.reconnects += 1
            wait = min(MAX_BACKOFF_S, 0.5 * 2 ** (attempts - 1))
            _logger.warning("%s: %s; reconnecting in %.1f s (attempt %d of %d)", self.path, reason, wait, attempts,
                            self.reconnect)  # fmt: skip
            if self._stop.wait(wait):
                break
            try:
                container = self._open()
            except InputError as e:
                container, reason = None, str(e)
        self.end("stopped" if self._stop.is_set() else reason)

    def _add(self, frame: Any, stream: Any, first: bool) -> None:
        raw = float(frame.pts * stream.time_base) if frame.pts is not None else None
        if first or self._offset is None:  # a (re)connection: carry on one frame after the last time
            start = self._last + 1.0 / self.info.fps if self._last >= 0 else 0.0
            self._offset = start - (raw or 0.0)
        t = raw + self._offset if raw is not None else self._last + 1.0 / self.info.fps
        if t > self._last:
            self.add(t, rgb_array(frame, self._reformatter))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + 1)
