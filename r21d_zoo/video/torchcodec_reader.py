"""The torchcodec decoder (optional: ``pip install "r21d_zoo[torchcodec]"`` plus FFmpeg's shared libraries): decodes
on the CPU, or with NVDEC on an NVIDIA GPU (``device="cuda"``), where frames stay for resizing, cropping and
normalising.

Clips follow the same rules as the PyAV decoder (times from the first frame, the frame shown at each target time, or
consecutive native frames; the end of the stream is the last frame plus one frame period), so both decoders give the
same frames. torchcodec's exact seek mode indexes every frame when the file is opened and seeks by it.
"""

import io
import os
import re
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .reader import DecoderUnavailableError, VideoDecodeError, VideoInfo, VideoReader
from .transforms import resize_frames, resized_hw
from .writer import write_video

PIP_HINT = 'pip install "r21d_zoo[torchcodec]"'
LIBRARIES_HINT = (
    "torchcodec loads FFmpeg's shared libraries (libavcodec, libavformat, libavutil, libswscale, libswresample; "
    "FFmpeg 4 to 8) from the system, and they are missing or unusable here. Install them: Debian/Ubuntu: "
    "sudo apt-get install ffmpeg (or just the libraries, e.g. on Debian 12: libavcodec59 libavformat59 libavutil57 "
    "libswscale6 libswresample4 libavdevice59 libavfilter8); conda: conda install -c conda-forge ffmpeg"
)
OTHER_DECODER = "or decode with PyAV, which bundles its own FFmpeg (--decoder pyav, decoder=\"pyav\")"


def _tiny_video() -> bytes:
    """Two 16x16 H.264 frames in MP4, encoded by PyAV (which bundles its own FFmpeg)."""
    buffer = io.BytesIO()
    write_video(buffer, np.zeros((2, 16, 16, 3), np.uint8), container_format="mp4")
    return buffer.getvalue()


def _first_sentence(e: BaseException) -> str:
    """The error's type and first sentence (torchcodec's own message goes on for pages)."""
    sentences = re.split(r"(?<=[.:])\s", str(e).strip(), maxsplit=1)
    return f"{type(e).__name__}: {sentences[0]}"


class TorchCodecReader(VideoReader):
    """One open video. ``resize`` resizes decoded frames with torch (on the decoding device, the reference
    preprocessing); ``frame_size`` resizes inside the decoder instead (faster, not the reference)."""

    devices = ("cpu", "cuda")

    @classmethod
    def check_usable(cls) -> None:
        """torchcodec imports without FFmpeg (it loads its core library lazily), so decode a tiny video to know."""
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError as e:
            raise DecoderUnavailableError(
                f"the torchcodec decoder is not installed ({_first_sentence(e)}); {PIP_HINT}, {OTHER_DECODER}"
            ) from e
        try:
            VideoDecoder(_tiny_video(), seek_mode="exact").get_frame_at(0)
        except Exception as e:  # any failure on a known-good video is the set-up's, not a video's
            raise DecoderUnavailableError(
                f"the torchcodec decoder cannot run on this machine ({_first_sentence(e)}). {LIBRARIES_HINT}; "
                f"{OTHER_DECODER}"
            ) from e

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]", bytes],
        resize: Union[int, Tuple[int, int], None] = None,
        frame_size: Union[int, Tuple[int, int], None] = None,
        interpolation: str = "bilinear",
        antialias: bool = False,
        device: Union[str, torch.device] = "cpu",
    ):
        from torchcodec.decoders import VideoDecoder  # open_video checked that it loads (check_usable)

        in_memory = isinstance(path, (bytes, bytearray, memoryview))
        self.path = f"<in-memory video, {len(path)} bytes>" if in_memory else str(path)
        source = bytes(path) if in_memory else self.path
        self.resize, self.interpolation, self.antialias = resize, interpolation, antialias
        if not in_memory and not os.path.exists(self.path):
            raise VideoDecodeError(f"{self.path}: cannot open: no such file (check the path)")
        transforms = None
        try:
            if frame_size is not None:
                from torchcodec.transforms import Resize

                probe = VideoDecoder(source, seek_mode="approximate").metadata
                transforms = [Resize(size=resized_hw(probe.height, probe.width, frame_size))]
            self._decoder = VideoDecoder(
                source, dimension_order="NHWC", device=str(device), seek_mode="exact", transforms=transforms
            )
            md = self._decoder.metadata
        except (RuntimeError, ValueError) as e:
            raise VideoDecodeError(
                f"{self.path}: cannot open: {type(e).__name__}: {e} (the file is corrupt, truncated or not a video; "
                f"re-encode it, e.g. ffmpeg -i in -c:v libx264 out.mp4)"
            ) from e
        if not md.num_frames:
            raise VideoDecodeError(f"{self.path}: the video stream has no frames (zero-length video)")
        self._begin = float(md.begin_stream_seconds)
        header = md.duration_seconds_from_header
        duration = float(header) if header else float(md.end_stream_seconds) - self._begin
        self._fps = md.num_frames / duration if duration > 0 else 30.0  # FFmpeg's average rate (PyAV's)
        self._last: Optional[Tuple[float, torch.Tensor]] = None
        rotation = int(round(md.rotation or 0)) % 360
        self.info = VideoInfo(self.path, duration, self._fps, md.width, md.height, rotation, self._begin)

    def _last_frame(self) -> Tuple[float, torch.Tensor]:
        """Time (from the first frame) and pixels of the last frame; torchcodec's play ranges end at its pts."""
        if self._last is None:
            frame = self._decoder.get_frame_at(self._decoder.metadata.num_frames - 1)
            self._last = (float(frame.pts_seconds) - self._begin, frame.data)
        return self._last

    def _end(self) -> float:
        """End of the stream from the first frame: the last frame's time plus one frame period (PyAV's rule)."""
        return self._last_frame()[0] + 1.0 / self._fps

    def _read(
        self, start: float, num_frames: int, frame_rate: Optional[float], sampling_stride: int
    ) -> Tuple[torch.Tensor, np.ndarray]:
        try:
            if frame_rate is not None:
                frames, times = self._played_at(start + np.arange(num_frames) * sampling_stride / frame_rate)
            else:
                frames, times = self._consecutive(start, num_frames, sampling_stride)
        except (RuntimeError, IndexError) as e:
            raise VideoDecodeError(f"{self.path}: decoding failed near {start:.2f}s: {type(e).__name__}: {e}") from e
        if self.resize is not None and len(times):
            frames = resize_frames(frames, self.resize, self.interpolation, self.antialias)
        return frames, times

    def _extent(self) -> str:
        return f"decoded duration {self._end():.3f}s, reported {self.info.duration:.3f}s"

    def _played_at(self, targets: np.ndarray) -> Tuple[torch.Tensor, np.ndarray]:
        """The frame shown at each target time, up to the end of the stream (before the first frame: the first)."""
        eps = 1e-3 / self._fps
        end, (last_t, last) = self._end(), self._last_frame()
        kept = [max(float(t) + eps, 0.0) for t in targets if t < end - eps]
        inner = [t for t in kept if t < last_t]
        frames, times = [], []
        if inner:
            batch = self._decoder.get_frames_played_at(seconds=[t + self._begin for t in inner])
            frames.append(batch.data)
            times.append(batch.pts_seconds.double().numpy() - self._begin)
        if len(kept) > len(inner):  # at or after the last frame's time
            frames.append(last[None].expand(len(kept) - len(inner), *last.shape))
            times.append(np.full(len(kept) - len(inner), last_t))
        if not frames:
            return torch.empty(0), np.empty(0)
        return torch.cat(frames), np.concatenate(times)

    def _consecutive(self, start: float, num_frames: int, stride: int) -> Tuple[torch.Tensor, np.ndarray]:
        """``num_frames`` native frames, every ``stride``-th, from the first frame at or after ``start``."""
        lo = max(start - 0.5 / self._fps, 0.0)
        last_t, last = self._last_frame()
        span = (num_frames * stride + 2) / self._fps
        while True:
            hi = min(lo + span, last_t)
            data, pts = last.new_empty((0, *last.shape)), np.empty(0)
            if lo < hi:
                batch = self._decoder.get_frames_played_in_range(lo + self._begin, hi + self._begin)
                data, pts = batch.data, batch.pts_seconds.double().numpy() - self._begin
            if hi >= last_t and lo <= last_t + 1e-9:  # the range stops at the last frame's time: add that frame
                data = torch.cat([data, last[None]])
                pts = np.append(pts, last_t)
            keep = np.nonzero(pts >= lo - 1e-9)[0][::stride][:num_frames]
            if len(keep) == num_frames or hi >= last_t:
                return data[torch.from_numpy(keep)], pts[keep]
            span *= 2  # variable frame rate: frames sparser than the average rate

    def close(self) -> None:
        self._decoder = None
