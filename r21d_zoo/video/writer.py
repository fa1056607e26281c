"""One H.264 writer (PyAV) for everything that makes videos: the demo clip, the synthetic datasets, the benchmarks and
the tests; and :func:`stream_video`, a live MPEG-TS stream of frames (the live benchmark's and tests' source)."""

import os
import time
from fractions import Fraction
from typing import Any, BinaryIO, Callable, Dict, Iterable, Optional, Sequence, Union

import numpy as np


def write_video(
    path: Union[str, "os.PathLike[str]", BinaryIO],
    frames: Iterable[np.ndarray],
    fps: int = 10,
    *,
    pix_fmt: str = "yuv420p",
    options: Optional[Dict[str, str]] = None,
    gop: Optional[int] = None,
    pts: Optional[Sequence[int]] = None,
    time_base: Fraction = Fraction(1, 1000),
    rotation: Optional[int] = None,
    audio: bool = False,
    container_format: Optional[str] = None,
) -> str:
    """Encode uint8 (H, W, 3) RGB ``frames`` with libx264. ``pix_fmt="yuv444p"`` with ``options={"qp": "0"}`` is
    lossless (and allows odd sizes); ``pts`` (in ``time_base`` units) sets each frame's time for variable frame rates
    or late-starting streams; ``rotation`` writes display-matrix metadata; ``audio`` adds a 440 Hz AAC track as long
    as the video. ``path`` may be a seekable binary file object (then name ``container_format``). Returns the path
    written ("" for a file object)."""
    import av

    target = path if hasattr(path, "write") else str(path)
    with av.open(target, "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.pix_fmt = pix_fmt
        stream.options = dict(options or {}, **({"bf": "0"} if pts is not None else {}))
        if gop is not None:
            stream.codec_context.gop_size = gop
        if pts is not None:
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        astream = container.add_stream("aac", rate=16000) if audio else None
        count = 0
        for i, array in enumerate(frames):
            if i == 0:
                stream.height, stream.width = array.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode())
        if astream is not None:
            write_tone(container, astream, seconds=count / fps)
    return target if isinstance(target, str) else ""


def stream_video(target: Union[str, BinaryIO], frames: Iterable[np.ndarray], fps: int = 10, pace: float = 1.0) -> None:
    """Send uint8 (H, W, 3) RGB ``frames`` as a live MPEG-TS stream (lossless H.264, no encoder delay, each packet
    flushed) to ``target``: a URL FFmpeg writes to (``tcp://127.0.0.1:PORT?listen=1`` waits for one client) or a
    writable binary file such as a pipe, one frame every ``1 / (fps * pace)`` s (``pace=1``: real time) counted from
    the first, which is sent once a client is there. Returns once every frame is sent, or when the reader goes away.
    PyAV holds the GIL while FFmpeg waits for a client: serve a URL from a process of its own."""
    import av

    try:
        container = av.open(target, "w", format="mpegts", container_options={"flush_packets": "1"})
    except (OSError, av.FFmpegError):
        return
    try:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "0", "tune": "zerolatency",
                                                                     "preset": "ultrafast"})  # fmt: skip
        stream.pix_fmt = "yuv444p"
        start = None
        for i, array in enumerate(frames):
            if start is None:
                stream.height, stream.width = array.shape[:2]
            else:
                time.sleep(max(0.0, start + i / (fps * pace) - time.monotonic()))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
            if start is None:  # the clock starts once the first frame is out: a listening URL waits for its client
                start = time.monotonic()  # in this first write, and the frames must not then come in one burst
        container.mux(stream.encode())
    except (OSError, av.FFmpegError, ValueError):
        pass  # the reader went away
    finally:
        try:
            container.close()
        except (OSError, av.FFmpegError):
            pass


def rewrite_video(
    source: Union[str, "os.PathLike[str]"],
    path: Union[str, "os.PathLike[str]", BinaryIO],
    edit: Callable[[float, np.ndarray], np.ndarray],
    fps: int,
) -> None:
    """Re-encode ``source`` frame by frame through ``edit(time, frame)`` (e.g. drawing on it), holding one frame at a
    time; ``path`` may be a file object (written as MP4)."""
    from .pyav import PyAVReader

    with PyAVReader(source) as reader:
        frames = (edit(t, frame) for t, frame in reader.frames())
        write_video(path, frames, fps, container_format="mp4" if hasattr(path, "write") else None)


def write_tone(container: Any, stream: Any, seconds: float, rate: int = 16000) -> None:
    """A 440 Hz mono tone of ``seconds`` into an open container's audio ``stream``."""
    import av

    samples, t = 1024, 0
    while t < seconds * rate:
        tone = (0.1 * np.sin(np.arange(t, t + samples) * 2 * np.pi * 440 / rate)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, t
        container.mux(stream.encode(frame))
        t += samples
    container.mux(stream.encode())
