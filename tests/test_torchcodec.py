"""The optional torchcodec decoder gives the same clips as PyAV: times, padding and pixels, then the same features.

They need FFmpeg's shared libraries from the OS, which the README's set-up does not install: without them they skip,
naming the libraries (``check_decoder`` decodes a tiny video to know). CI installs the libraries and sets
R21D_ZOO_REQUIRE_TORCHCODEC=1, so these tests fail there instead of skipping when the decoder is unusable.
"""

import os

import numpy as np
import pytest
import torch

import r21d_zoo
from r21d_zoo.models import ClipSpec
from r21d_zoo.video import DecodeOptions, DecoderUnavailableError, VideoDecodeError, check_decoder, open_video
from util import make_broken, make_video, make_zero_frames

pytestmark = pytest.mark.video


@pytest.fixture(scope="module", autouse=True)
def torchcodec_usable():
    try:
        check_decoder("torchcodec")
    except DecoderUnavailableError as e:
        if os.environ.get("R21D_ZOO_REQUIRE_TORCHCODEC") == "1":
            pytest.fail(f"torchcodec is required here (R21D_ZOO_REQUIRE_TORCHCODEC=1) but unusable: {e}")
        pytest.skip(f"needs FFmpeg's shared libraries for torchcodec: {e}")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tc")
    vfr = [0, 100, 150, 300, 310, 500, 700, 720, 900, 1000, 1200, 1250]
    return {
        "cfr": make_video(root / "cfr.mp4", num_frames=60, fps=10, gop=10),
        "late_start": make_video(root / "late.mp4", num_frames=20, pts=[500 + 100 * i for i in range(20)]),
        "vfr": make_video(root / "vfr.mp4", num_frames=len(vfr), pts=vfr),
        "rotated": make_video(root / "rot.mp4", num_frames=5, size=(64, 96), rotation=90, marker=True),
        "odd_size_444": make_video(root / "odd.mp4", num_frames=5, size=(63, 97), pix_fmt="yuv444p"),
    }


# (start s, frames, frame rate or None for consecutive native frames, stride): inside, across the end, past the end
CLIPS = [
    (0.0, 8, None, 1),
    (0.3, 8, None, 2),
    (0.05, 4, None, 1),
    (1.2, 4, None, 1),
    (0.0, 64, None, 1),
    (0.0, 40, None, 3),
    (5.8, 4, None, 1),
    (1.0, 16, 15.0, 1),
    (0.0, 6, 7.5, 1),
    (2.5, 8, 5.0, 2),
    (5.95, 4, 10.0, 1),
]


@pytest.mark.parametrize("kind", ["cfr", "late_start", "vfr", "rotated", "odd_size_444"])
@pytest.mark.parametrize("resize", [None, (32, 48)])
def test_same_clips_as_pyav(videos, kind, resize):
    spec = ClipSpec(resize_size=resize)
    compared = 0
    with open_video(videos[kind], spec) as ref, open_video(videos[kind], spec, decoder="torchcodec") as tc:
        assert tc.info.duration == pytest.approx(ref.info.duration) and tc.info.fps == pytest.approx(ref.info.fps)
        assert (tc.info.width, tc.info.height, tc.info.rotation) == (ref.info.width, ref.info.height, ref.info.rotation)
        assert tc.info.start_time == pytest.approx(ref.info.start_time)
        for start, n, rate, stride in CLIPS:
            for pad in ("repeat", "loop"):
                try:
                    want = ref.read_clip(start, n, rate, stride, pad)
                except VideoDecodeError:  # past the end: both refuse
                    with pytest.raises(VideoDecodeError, match="no frames at or after"):
                        tc.read_clip(start, n, rate, stride, pad)
                    continue
                got = tc.read_clip(start, n, rate, stride, pad)
                case = (kind, start, n, rate, stride, pad)
                np.testing.assert_allclose(got.times, want.times, atol=1e-6, err_msg=str(case))
                assert got.num_padded == want.num_padded, case
                assert got.frames.dtype == torch.uint8 and got.frames.shape == want.frames.shape, case
                diff = (got.frames.int() - want.frames.int()).abs().max().item()
                assert diff <= 2, (case, diff)  # the same FFmpeg conversion, up to codec rounding
                compared += 1
    assert compared >= 8


def test_same_features_as_pyav(videos):
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=4, channel_multiplier=0.125).eval()
    path = videos["cfr"]
    kwargs = dict(num_frames=8, resize_size=(64, 86), crop_size=56, batch_size=3)
    ref = r21d_zoo.extract_features(model, path, **kwargs)
    got = r21d_zoo.extract_features(model, path, decode=DecodeOptions("torchcodec"), **kwargs)
    np.testing.assert_allclose(got.clip_times, ref.clip_times)
    np.testing.assert_allclose(got.features, ref.features, rtol=1e-4, atol=1e-4)
    assert got.features.shape == (8, model.num_features)


def test_cli_decoder_flag(videos, tmp_path):
    from r21d_zoo.cli import main as cli_main

    torch.manual_seed(0)
    folder = r21d_zoo.save_pretrained(
        r21d_zoo.create_model("r3d_18", num_classes=3, channel_multiplier=0.125), str(tmp_path / "m")
    )
    common = ["--model", f"local-dir:{folder}", "--num-frames", "4", "--crop-size", "32", "--workers", "0"]
    assert cli_main(["extract", str(videos["cfr"]), "-o", str(tmp_path / "a"), *common]) == 0
    assert cli_main(["extract", str(videos["cfr"]), "-o", str(tmp_path / "b"), "--decoder", "torchcodec", *common]) == 0
    a, b = np.load(tmp_path / "a" / "cfr.npy"), np.load(tmp_path / "b" / "cfr.npy")
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_bad_files_fail_with_the_same_clear_errors(tmp_path, videos):
    with pytest.raises(VideoDecodeError, match="no such file"):
        open_video(tmp_path / "missing.mp4", decoder="torchcodec")
    for kind in ("empty", "random", "truncated"):
        broken = make_broken(kind, tmp_path / f"{kind}.mp4", videos["cfr"])
        with pytest.raises(VideoDecodeError, match=f"{broken}.*(corrupt|no frames)"):
            with open_video(broken, decoder="torchcodec") as reader:
                reader.read_clip(5.0, 8)
    no_frames = make_zero_frames(tmp_path / "zero.mkv")  # torchcodec cannot index it: reported as unreadable
    with pytest.raises(VideoDecodeError, match=f"{no_frames}.*(corrupt|no frames)"):
        open_video(no_frames, decoder="torchcodec")


def test_decoder_resize_gives_the_spec_size(videos):
    spec = ClipSpec(resize_size=(32, 48))
    with open_video(videos["cfr"], spec, decoder="torchcodec", fast_resize=True) as reader:
        assert reader.read_clip(0.0, 4).frames.shape == (4, 32, 48, 3)


def test_gpu_decoding_is_refused_for_cpu_only_backends(videos):
    with pytest.raises(ValueError, match="cannot decode on cuda"):
        open_video(videos["cfr"], decoder="pyav", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_decoding_matches_cpu(videos):
    spec = ClipSpec(resize_size=(32, 48))
    with open_video(videos["cfr"], spec, decoder="torchcodec") as cpu:
        want = cpu.read_clip(0.5, 8)
    with open_video(videos["cfr"], spec, decoder="torchcodec", device="cuda") as gpu:
        got = gpu.read_clip(0.5, 8)
    assert got.frames.is_cuda and np.allclose(got.times, want.times)
    assert (got.frames.cpu().int() - want.frames.int()).abs().float().mean() < 3  # NVDEC's colour conversion differs
