"""Decoding real PyAV-written videos: timestamps, frame selection, VFR, rotation, padding, errors, samplers."""

import math
import sys
import types

import numpy as np
import pytest
import torch

import r21d_zoo

from r21d_zoo.models import ClipSpec
from r21d_zoo.video import (
    DecodeOptions,
    DecoderUnavailableError,
    VideoClassificationTransform,
    VideoDecodeError,
    check_decoder,
    open_video,
    random_clip,
    read_clip,
    resize_frames,
    sliding_clips,
    uniform_clips,
)
from r21d_zoo.video.pyav import PyAVReader
from util import decode_index, make_audio_only, make_broken, make_video, make_zero_frames

pytestmark = pytest.mark.video


def indices(clip) -> list:
    return [decode_index(f) for f in clip.frames.numpy()]


@pytest.fixture(scope="module")
def cfr(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "cfr.mp4", num_frames=60, fps=10, gop=10)


def test_metadata_and_consecutive_frames(cfr):
    with open_video(cfr) as r:
        assert (r.info.duration, r.info.fps, r.info.width, r.info.height, r.info.rotation) == (6.0, 10.0, 96, 64, 0)
        clip = r.read_clip(0.0, 8)
        assert indices(clip) == list(range(8))
        np.testing.assert_allclose(clip.times, np.arange(8) / 10)
        assert clip.frames.dtype == torch.uint8 and clip.frames.shape == (8, 64, 96, 3)
        assert indices(r.read_clip(1.0, 8, sampling_stride=2)) == list(range(10, 26, 2))


def test_resampling_to_a_frame_rate_picks_the_frame_shown_at_each_time(cfr):
    with open_video(cfr) as r:
        assert indices(r.read_clip(2.0, 6, frame_rate=5)) == [20, 22, 24, 26, 28, 30]
        assert indices(r.read_clip(0.3, 6, frame_rate=20)) == [3, 3, 4, 4, 5, 5]  # upsampling repeats frames


def test_seek_gives_the_frames_of_a_decode_from_the_start(cfr):
    with open_video(cfr) as r:
        late = r.read_clip(4.5, 8)  # first read: seeks to the keyframe at 4.0 s
    with open_video(cfr) as r:
        for t in (0.0, 1.0, 2.0, 3.0):  # decode forward without seeking (clips under a second apart)
            r.read_clip(t, 8)
        r.read_clip(3.8, 8)
        linear = r.read_clip(4.5, 8)
    assert indices(late) == list(range(45, 53))
    assert torch.equal(late.frames, linear.frames)


def test_iter_clips_matches_independent_reads_with_overlap_and_backwards_jumps(cfr):
    clips = sliding_clips(6.0, 1.6, stride=0.7)
    with open_video(cfr) as r:
        streamed = {c.index: f for c, f in r.iter_clips(clips, ClipSpec(num_frames=16, resize_size=None))}
        back = r.read_clip(0.5, 4)  # jumping back seeks again
    assert indices(back) == [5, 6, 7, 8]
    for c in clips:
        expected = read_clip(str(cfr), c.start, 16)
        assert torch.equal(streamed[c.index].frames, expected.frames), c
        assert streamed[c.index].num_padded == expected.num_padded


def test_last_clip_is_padded_by_repeat_or_loop_and_reports_it(cfr):
    with open_video(cfr) as r:
        rep = r.read_clip(5.5, 8)
        loop = r.read_clip(5.5, 8, pad="loop")
    assert indices(rep) == [55, 56, 57, 58, 59, 59, 59, 59] and rep.num_padded == 3
    assert indices(loop) == [55, 56, 57, 58, 59, 55, 56, 57] and loop.num_padded == 3
    with pytest.raises(ValueError, match="pad must be one of"):
        read_clip(str(cfr), 0, 4, pad="zeros")


def test_variable_frame_rate_uses_timestamps(tmp_path):
    pts = [0, 100, 150, 400, 450, 460, 900, 1000, 1300, 1500]  # ms
    path = make_video(tmp_path / "vfr.mp4", num_frames=len(pts), pts=pts)
    with open_video(path) as r:
        assert math.isclose(r.info.duration, 1.6, abs_tol=1e-6)  # last frame + its duration
        clip = r.read_clip(0.0, 16, frame_rate=10)
    targets = np.arange(16) / 10
    expected = [max(i for i, p in enumerate(pts) if p / 1000 <= t + 1e-9) for t in targets]
    assert indices(clip) == expected
    np.testing.assert_allclose(clip.times, [pts[i] / 1000 for i in expected])


def test_stream_starting_at_nonzero_pts_is_shifted_to_zero(tmp_path):
    pts = [500 + 100 * i for i in range(20)]
    path = make_video(tmp_path / "late.mp4", num_frames=20, pts=pts)
    with open_video(path) as r:
        assert math.isclose(r.info.start_time, 0.5, abs_tol=1e-6)
        assert math.isclose(r.info.duration, 2.0, abs_tol=1e-6)
        clip = r.read_clip(1.0, 4)
    assert indices(clip) == [10, 11, 12, 13]
    np.testing.assert_allclose(clip.times, [1.0, 1.1, 1.2, 1.3], atol=1e-6)


def test_rotation_metadata_is_applied(tmp_path):
    path = make_video(tmp_path / "rot.mp4", num_frames=5, size=(64, 96), rotation=90, marker=True)
    with open_video(path) as r:
        assert (r.info.rotation, r.info.width, r.info.height) == (90, 64, 96)
        frame = r.read_clip(0, 1).frames[0].numpy()
    assert frame.shape == (96, 64, 3)
    # the red marker of the stored frame's top-left corner is at the bottom-left after a 90 degree CCW turn
    assert frame[-5, 5, 0] > 200 and frame[-5, 5, 1] < 60 and frame[5, 5, 0] < 60
    with PyAVReader(path, frame_size=(48, 32)) as r:  # decoder-side resize lands on the displayed size
        assert r.read_clip(0, 1).frames.shape == (1, 48, 32, 3)


def test_odd_sizes_resize_by_short_side_in_decoder_or_torch(tmp_path):
    path = make_video(tmp_path / "odd.mp4", num_frames=5, size=(63, 97), pix_fmt="yuv444p")
    with open_video(path) as r:
        assert r.read_clip(0, 2).frames.shape == (2, 63, 97, 3)
    with PyAVReader(path, resize=32) as r:
        torch_resized = r.read_clip(0, 2).frames
    with PyAVReader(path, frame_size=32) as r:
        swscale = r.read_clip(0, 2).frames
    assert torch_resized.shape == swscale.shape == (2, 32, 49, 3)
    full = read_clip(str(path), 0, 2).frames
    assert torch.equal(torch_resized, resize_frames(full, 32))
    assert indices(read_clip(str(path), 0, 2, resize_size=32)) == [0, 1]


def _read_after_fork(path: str) -> None:
    for frame_size in (None, 24):
        with PyAVReader(path, frame_size=frame_size) as r:
            assert r.read_clip(0, 3).frames.shape[0] == 3


def test_a_forked_process_decodes_after_its_parent_converted_frames(cfr):
    """A DataLoader worker is a fork of a process that has converted frames (ours, torchvision's, the user's): PyAV
    17+ scales through a reformatter shared per thread whose slice threads the fork does not have, so a reader that
    used it waited forever in the worker (pretraining and extraction hung with workers)."""
    import multiprocessing

    import av

    with av.open(str(cfr)) as container:  # PyAV's own shared reformatter, as other code in the parent would use it
        frame = next(container.decode(video=0))
        frame.to_ndarray(format="rgb24"), frame.to_ndarray(width=24, height=24, format="rgb24")
    _read_after_fork(str(cfr))  # and ours
    child = multiprocessing.get_context("fork").Process(target=_read_after_fork, args=(str(cfr),))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0, "the forked reader did not finish within 60 s (or failed)"


def test_resize_frames_matches_the_evaluation_transform():
    frames = torch.randint(0, 256, (4, 90, 120, 3), dtype=torch.uint8)
    t = VideoClassificationTransform((64, 85), 56, (0.5,) * 3, (0.25,) * 3)
    assert torch.equal(t(resize_frames(frames, (64, 85))), t(frames))


def test_audio_and_video_file_reads_the_video(tmp_path):
    path = make_video(tmp_path / "av.mp4", num_frames=20, audio=True)
    with open_video(path) as r:
        assert math.isclose(r.info.duration, 2.0, abs_tol=1e-6)
        assert indices(r.read_clip(1.0, 5)) == [10, 11, 12, 13, 14]


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing", "No such file.*check the path"),
        ("empty", "cannot open.*InvalidDataError"),
        ("random", "cannot open.*InvalidDataError"),
        ("truncated", "cannot open.*(corrupt|truncated)"),
        ("audio_only", "no video stream.*audio"),
        ("zero_frames", "no frames"),
    ],
)
def test_bad_videos_raise_a_clear_error_naming_the_file(tmp_path, cfr, kind, match):
    path = tmp_path / f"{kind}.mp4"
    if kind == "audio_only":
        make_audio_only(path)
    elif kind == "zero_frames":
        path = make_zero_frames(tmp_path / "zero.mkv")
    elif kind != "missing":
        make_broken(kind, path, cfr)
    with pytest.raises(VideoDecodeError, match=match) as e:
        open_video(path)
    assert str(path) in str(e.value)


def test_sliding_clips_cover_the_video_and_keep_the_tail():
    clips = sliding_clips(10.0, 1.6)
    assert [c.index for c in clips] == list(range(7))
    assert clips[0].start == 0 and clips[-1].end >= 10.0 and clips[-2].end < 10.0
    assert all(math.isclose(b.start, a.end) for a, b in zip(clips, clips[1:]))
    assert len(sliding_clips(0.5, 1.6)) == 1  # shorter than a clip: one padded clip
    assert [round(c.start, 6) for c in sliding_clips(3.0, 1.0, stride=0.5)] == [0, 0.5, 1.0, 1.5, 2.0]
    # a stride longer than the window: gaps, and no window that starts at the end (it would hold no frame)
    assert [c.start for c in sliding_clips(6.0, 0.4, stride=1.0)] == [0, 1, 2, 3, 4, 5]


def test_uniform_and_random_clips():
    clips = uniform_clips(12.0, 2.0, 10)
    assert len(clips) == 10 and clips[0].start == 0 and math.isclose(clips[-1].end, 12.0)
    np.testing.assert_allclose(np.diff([c.start for c in clips]), 10.0 / 9)
    assert uniform_clips(12.0, 2.0, 1)[0].start == 5.0  # one clip: the centre
    g = torch.Generator().manual_seed(0)
    starts = [random_clip(12.0, 2.0, g).start for _ in range(200)]
    assert 0 <= min(starts) < 1 and 9 < max(starts) <= 10.0


def test_the_decoder_seam_takes_a_new_backend_by_name(cfr, monkeypatch):
    from r21d_zoo.video.reader import DECODERS
    from util import RecordingReader

    monkeypatch.setitem(DECODERS, "recording", "util:RecordingReader")
    RecordingReader.opened.clear()
    with open_video(cfr, ClipSpec(resize_size=32), decoder="recording") as r:
        assert r.read_clip(0.0, 2).frames.shape == (2, 32, 48, 3)
    model = r21d_zoo.create_model("r2plus1d_18", channel_multiplier=0.125, num_classes=3).eval()
    model.pretrained_cfg.update(num_frames=4, resize_size=(32, 40), crop_size=28)
    ours = r21d_zoo.extract_features(model, cfr, num_clips=2, decode=DecodeOptions("recording"))
    reference = r21d_zoo.extract_features(model, cfr, num_clips=2)
    np.testing.assert_array_equal(ours.features, reference.features)
    assert RecordingReader.opened == [str(cfr)] * 2
    with pytest.raises(ValueError, match="unknown video decoder 'nope'; available: pyav"):
        open_video(cfr, decoder="nope")


# --- an optional decoder that cannot load here ------------------------------------------------------------------------
# torchcodec imports without FFmpeg's shared libraries and fails only at its first decode; the fake module below fails
# the way it does then (its real message), so these run on every machine, with or without the libraries.


@pytest.fixture
def fresh_decoder_check():
    from r21d_zoo.video import reader

    reader._unusable_reason.cache_clear()
    yield
    reader._unusable_reason.cache_clear()


def _torchcodec_without_ffmpeg(monkeypatch):
    class VideoDecoder:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not properly installed")

    monkeypatch.setitem(sys.modules, "torchcodec.decoders", types.SimpleNamespace(VideoDecoder=VideoDecoder))


def test_a_decoder_without_its_libraries_is_one_clear_error(cfr, monkeypatch, fresh_decoder_check):
    _torchcodec_without_ffmpeg(monkeypatch)
    with pytest.raises(DecoderUnavailableError) as e:
        open_video(cfr, decoder="torchcodec")
    message = str(e.value)
    assert "Could not load libtorchcodec" in message and "libavcodec" in message
    assert "apt-get install ffmpeg" in message and "conda install -c conda-forge ffmpeg" in message
    assert "--decoder pyav" in message and "re-encode" not in message and str(cfr) not in message  # not the video's
    check_decoder("pyav")  # the bundled decoder is unaffected
    with open_video(cfr, decoder="pyav") as r:
        assert r.read_clip(0.0, 2).frames.shape[0] == 2


def test_a_decoder_that_is_not_installed_says_how_to_install_it(cfr, monkeypatch, fresh_decoder_check):
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import fails as when not installed
    with pytest.raises(DecoderUnavailableError, match=r'not installed.*pip install "r21d_zoo\[torchcodec\]"'):
        open_video(cfr, decoder="torchcodec")


def test_extract_with_an_unusable_decoder_exits_3_before_any_work(
    cfr, tmp_path, monkeypatch, capsys, fresh_decoder_check
):
    from r21d_zoo.cli import EXIT_INPUT, main

    _torchcodec_without_ffmpeg(monkeypatch)
    out = tmp_path / "feats"
    args = ["extract", str(cfr), "-o", str(out), "--decoder", "torchcodec", "--model", "r3d_18", "--random-weights"]
    assert main(args + ["--workers", "0"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "apt-get install ffmpeg" in err and "re-encod" not in err
    assert not out.exists()  # refused before the output folder, the model or any video


def test_torchcodec_unusable_on_this_machine_is_reported_the_same_way(cfr, fresh_decoder_check):
    """The real thing, where FFmpeg's shared libraries are missing (the README's set-up does not install them)."""
    try:
        check_decoder("torchcodec")
    except DecoderUnavailableError as e:
        assert ("apt-get install ffmpeg" in str(e) or "pip install" in str(e)) and "re-encode" not in str(e)
        with pytest.raises(DecoderUnavailableError):
            open_video(cfr, decoder="torchcodec")
    else:
        with open_video(cfr, decoder="torchcodec") as r:  # usable: it decodes
            assert r.read_clip(0.0, 2).frames.shape[0] == 2


def test_the_old_keyword_names_still_work_with_a_warning(cfr):
    with pytest.warns(FutureWarning, match=r"open_video\(backend=\.\.\.\) is deprecated .* use decoder="):
        with open_video(cfr, backend="pyav") as r:
            assert r.info.duration > 0
    spec = ClipSpec(resize_size=32)
    with pytest.warns(FutureWarning, match=r"open_video\(decoder_resize=\.\.\.\) is deprecated .* use fast_resize="):
        with open_video(cfr, spec, decoder_resize=True) as r:
            fast = r.read_spec_clip(0.0, ClipSpec(num_frames=2, resize_size=32)).frames
    with open_video(cfr, spec, fast_resize=True) as r:
        assert torch.equal(r.read_spec_clip(0.0, ClipSpec(num_frames=2, resize_size=32)).frames, fast)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, channel_multiplier=0.125)
    with pytest.warns(FutureWarning, match=r"extract_features\(clip_stride=\.\.\.\)"):
        old = r21d_zoo.extract_features(model, cfr, clip_stride=1.0, num_frames=4, resize_size=32, crop_size=28)
    new = r21d_zoo.extract_features(model, cfr, stride_sec=1.0, num_frames=4, resize_size=32, crop_size=28)
    assert torch.equal(torch.from_numpy(old.features), torch.from_numpy(new.features))
