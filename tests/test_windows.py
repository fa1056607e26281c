"""Every window inside its video or segment: the rule (``ExtractConfig.clips_for`` over the samplers) against times
computed independently for random durations, rates and lengths, and the videos that used to fail at their end."""

import math
from pathlib import Path

import av
import numpy as np
import pytest

from r21d_zoo.data.inputs import VideoItem
from r21d_zoo.infer.config import ExtractConfig
from r21d_zoo.infer.features import ClipChunks
from r21d_zoo.models import ClipSpec
from r21d_zoo.video import VideoInfo, open_video
from util import decode_index, index_frame, make_video


def _expected_starts(mode: str, length: float, clip: float, period: float, value: float) -> list:
    """Window starts computed from the definitions, by walking output times one by one (not by the samplers'
    formulas): an output time exists while it lies before the final half frame."""
    last = length - max(period / 2, 1e-6)
    if mode == "num_clips":
        n = int(value)
        span = max(0.0, length - clip)
        return [span / 2] if n == 1 else [span * i / (n - 1) for i in range(n)]
    step = {"feature_fps": 1 / (value or 1), "centered": value, "sliding": value, "back_to_back": clip}[mode]
    starts, i = [], 0
    while True:
        t = i * step
        if i and t >= last:
            break
        if mode in ("sliding", "back_to_back") and i and (i - 1) * step + clip >= length - 1e-6:
            break  # the previous window already reached the end
        starts.append(t - clip / 2 if mode == "centered" else t)
        i += 1
    return starts


def test_every_window_of_every_mode_starts_inside_its_video_or_segment():
    """600 random cases: random duration, frame rate, clip length, mode and (half the time) a segment."""
    rng = np.random.default_rng(0)
    modes = ["num_clips", "feature_fps", "centered", "sliding", "back_to_back"]
    for case in range(600):
        fps = float(rng.choice([8, 12.5, 15, 16, 23.976, 24, 25, 29.97, 30, 50, 60]))
        frames = int(rng.integers(1, 400))
        duration = frames / fps + float(rng.choice([0.0, 0.0005, -0.0004]))  # containers round their durations
        spec = ClipSpec(num_frames=int(rng.integers(1, 33)), sampling_stride=int(rng.integers(1, 3)))
        clip = spec.clip_seconds(fps)
        mode = modes[case % len(modes)]
        value = {
            "num_clips": rng.integers(1, 11),
            "feature_fps": rng.uniform(0.5, 40),
            "centered": rng.uniform(0.05, 3),
            "sliding": rng.uniform(0.05, 3),
            "back_to_back": 0,
        }[mode]
        kwargs = {
            "num_clips": dict(num_clips=int(value)),
            "feature_fps": dict(feature_fps=float(value)),
            "centered": dict(stride_sec=float(value), centered=True),
            "sliding": dict(stride_sec=float(value)),
            "back_to_back": {},
        }[mode]
        span = None
        if case % 2 and duration > 0.2:
            lo = float(rng.uniform(0, duration / 2))
            span = (lo, float(rng.uniform(0.05, duration - lo)))
        offset, length = span or (0.0, duration)
        info = VideoInfo("v.mp4", duration, fps, 32, 32, 0, 0.0)
        got = [c.start for c in ExtractConfig(**kwargs).clips_for(spec, info, span)]
        expected = [offset + s for s in _expected_starts(mode, length, clip, 1 / fps, float(value))]
        where = f"case {case}: {mode}={value} fps={fps} duration={duration} clip={clip} span={span}"
        assert np.allclose(got, expected, atol=1e-9), f"{where}\n{got}\n{expected}"
        lead = clip / 2 if mode == "centered" else 0.0
        assert all(offset - lead - 1e-9 <= s < offset + length - 0.5 / fps for s in got[1:]), where
        assert len(got) >= 1 and got[0] < offset + max(length - 0.5 / fps, 1e-6), where


def _ffv1(path: Path, num_frames: int, fps: int) -> Path:
    """Lossless FFV1 in Matroska, whose container rounds the duration up (2.0005 s for 30 frames at 15 fps)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv444p"
        for i in range(num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(index_frame(i, 32, 32), format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.video
@pytest.mark.parametrize("fps", [15, 16, 24])
def test_back_to_back_windows_of_ffv1_videos_all_decode(fps, tmp_path):
    path = _ffv1(tmp_path / f"v{fps}.mkv", 2 * fps, fps)
    spec = ClipSpec(num_frames=8, resize_size=32, crop_size=32)
    chunks = list(ClipChunks([VideoItem(str(path), "v")], spec, ExtractConfig()).__iter__())
    assert "error" not in chunks[-1], chunks[-1].get("error")
    assert sum(len(c["frames"]) for c in chunks) == math.ceil(2 * fps / 8)


@pytest.mark.video
@pytest.mark.parametrize("frames,fps,rate", [(47, 25, 8), (304, 30, 8)])
def test_feature_fps_windows_near_the_end_decode(frames, fps, rate, tmp_path):
    path = make_video(tmp_path / "v.mp4", num_frames=frames, size=(32, 32), fps=fps)
    spec = ClipSpec(num_frames=4, resize_size=32, crop_size=32)
    chunks = list(ClipChunks([VideoItem(str(path), "v")], spec, ExtractConfig(feature_fps=rate)).__iter__())
    assert "error" not in chunks[-1], chunks[-1].get("error")
    assert sum(len(c["frames"]) for c in chunks) == math.ceil((frames / fps - 0.5 / fps) * rate)


@pytest.mark.video
def test_a_segments_clips_hold_none_of_the_next_actions_frames(tmp_path):
    """A narration [3.2, 5.85] s of a 10 fps video: back-to-back 1 s clips; the last, [5.2, 6.2], is padded after
    frame 58 (5.8 s) instead of showing frames 59-61 of whatever comes next."""
    path = make_video(tmp_path / "long.mp4", num_frames=80, size=(32, 32), fps=10, pix_fmt="yuv444p")
    spec = ClipSpec(num_frames=10, resize_size=32, crop_size=32)
    item = VideoItem(str(path), "seg", start=3.2, end=5.85)
    (chunk,) = ClipChunks([item], spec, ExtractConfig()).__iter__()
    assert chunk["times"][:, 0].tolist() == pytest.approx([3.2, 4.2, 5.2])
    assert chunk["num_padded"].tolist() == [0, 0, 3]
    last = [decode_index(f.numpy()) for f in chunk["frames"][-1]]
    assert last == [52, 53, 54, 55, 56, 57, 58, 58, 58, 58]
    with open_video(path, spec) as reader:  # training and evaluation clips read through the same rule
        clip = reader.read_spec_clip(5.2, spec, end=5.85)
    assert [decode_index(f.numpy()) for f in clip.frames] == last and clip.num_padded == 3
