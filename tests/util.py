"""The tests' shared helpers, in one place: the tiny model settings, the learning tests' seed, a BN randomiser, a
loopback HTTP server, and real test videos written with the package's one writer (``r21d_zoo.video.write_video``:
each frame shows its index as 8 black/white stripes, robust to H.264)."""

import contextlib
import http.server
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import av
import numpy as np
import torch
import torch.nn as nn

from r21d_zoo.video.writer import write_tone, write_video

TINY = dict(channel_multiplier=0.125)  # widths 8/16/32/64: fast on CPU, same structure


def fork_workers_as_under_torchrun() -> None:
    """In a rank started by ``torch.multiprocessing.spawn``: DataLoader workers fork, as they do under torchrun. A
    spawned rank would spawn its workers too, each importing torch again (seconds per epoch on 2 cores)."""
    import multiprocessing

    multiprocessing.set_start_method("fork", force=True)


def learning_seed() -> int:
    """The seed of the learning tests' data and training (``R21D_ZOO_TEST_SEED``, default 0). Their claims must hold
    at any seed; rerun them at others to see their margin: ``R21D_ZOO_TEST_SEED=1 python -m pytest -m slow``."""
    return int(os.environ.get("R21D_ZOO_TEST_SEED", "0"))


def randomise_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (2D or 3D), so weight transforms are really exercised; returns
    the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@contextlib.contextmanager
def loopback_server(
    directory: Optional[Path] = None,
    handler: Optional[type] = None,
    requests: Optional[List[str]] = None,
) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 serving ``directory`` (or answering with ``handler``); yields its base URL.
    ``requests`` collects the paths asked for (without the leading '/')."""
    if handler is None:

        class handler(http.server.SimpleHTTPRequestHandler):  # noqa: N801
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def do_GET(self):  # noqa: N802
                if requests is not None:
                    requests.append(self.path.lstrip("/"))
                super().do_GET()

            def log_message(self, *args):
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- test videos -----------------------------------------------------------------------------------------------------




BITS = 8


def index_frame(i: int, h: int, w: int, marker: bool = False) -> np.ndarray:
    """Stripes encode ``i`` (MSB on the left); with ``marker`` a red square sits in the top-left corner."""
    frame = np.zeros((h, w, 3), np.uint8)
    xs = np.linspace(0, w, BITS + 1).astype(int)
    for b in range(BITS):
        if (i >> (BITS - 1 - b)) & 1:
            frame[:, xs[b] : xs[b + 1]] = 255
    if marker:
        frame[: h // 4, : w // 4] = (255, 0, 0)
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Inverse of :func:`index_frame` for an unrotated, possibly resized frame (reads the bottom half)."""
    h, w = frame.shape[:2]
    row = frame[h // 2 :, :, 1].mean(0)
    xs = np.linspace(0, w, BITS + 1)
    value = 0
    for b in range(BITS):
        centre = int((xs[b] + xs[b + 1]) / 2)
        value = (value << 1) | int(row[centre] > 127)
    return value


def make_video(
    path: Path,
    num_frames: int = 30,
    size: tuple = (64, 96),
    fps: int = 10,
    pts: Optional[Sequence[int]] = None,
    time_base: Fraction = Fraction(1, 1000),
    rotation: Optional[int] = None,
    audio: bool = False,
    gop: int = 10,
    marker: bool = False,
    pix_fmt: str = "yuv420p",
) -> Path:
    """H.264 mp4 of frames showing their index. ``pts`` (in ``time_base`` units) sets frame times: a variable frame
    rate, or a stream that starts late."""
    frames = (index_frame(i, *size, marker) for i in range(num_frames))
    write_video(
        path, frames, fps, pix_fmt=pix_fmt, gop=gop, pts=pts, time_base=time_base, rotation=rotation, audio=audio
    )
    return path


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as container:
        write_tone(container, container.add_stream("aac", rate=16000), seconds)
    return path


def make_zero_frames(path: Path) -> Path:
    """A Matroska file that declares a video stream but holds only audio packets (mp4 would drop the empty track)."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        write_tone(container, container.add_stream("aac", rate=16000), seconds=1.0)
    return path


def make_broken(kind: str, path: Path, source: Optional[Path] = None) -> Path:
    """``empty``, ``random`` bytes or ``truncated`` (the first half of ``source``)."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        data = source.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        raise ValueError(kind)
    return path


COLOURS = {"red": (210, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 210), "gray": (128, 128, 128)}


def colour_frames(colour: str, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A square of ``colour`` moving over a mid-grey textured background: (T, size, size, 3) uint8."""
    frames = np.full((num_frames, size, size, 3), 100, np.uint8)
    frames += rng.integers(0, 40, (1, size, size, 1), dtype=np.uint8)
    side = size // 3
    y, x = rng.integers(0, size - side, 2)
    dy, dx = rng.integers(-2, 3, 2)
    for t in range(num_frames):
        yt, xt = np.clip([y + dy * t, x + dx * t], 0, size - side)
        frames[t, yt : yt + side, xt : xt + side] = COLOURS[colour]
    return frames


def make_frames_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    from r21d_zoo.data.synthetic import write_lossless

    return write_lossless(path, frames, fps)


class RecordingReader:
    """A decoder for tests: PyAV underneath, recording every file it opens (registered in
    ``r21d_zoo.video.reader.DECODERS`` as ``util:RecordingReader``)."""

    opened: list = []

    def __new__(cls, path, **kwargs):
        from r21d_zoo.video.pyav import PyAVReader

        cls.opened.append(str(path))
        return PyAVReader(path, **kwargs)
