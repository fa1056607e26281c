"""caffe2 conversion: synthetic pickles with the real blob grammar, checked against a blob-level reference forward."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import r21d_zoo
from r21d_zoo.models._caffe2 import (
    Caffe2ConversionError,
    UnsafePickleError,
    caffe2_to_state_dict,
    load_caffe2_pickle,
)
from r21d_zoo.commands.cards import COMMANDS_END, COMMANDS_START, render_conversion_commands
from r21d_zoo.commands.convert import convert_caffe2, convert_torch
from r21d_zoo.models._registry import get_pretrained_cfg

from caffe2_reference import reference_forward, synth_blobs

ROOT = Path(__file__).resolve().parents[1]

# (family, depth, registry tag, expected blob count from the reference file where it gives one)
CASES = [
    ("r2plus1d", 18, "r2plus1d_18.kinetics400_8f", 187),
    ("r2plus1d", 34, "r2plus1d_34.ig65m_32f", 347),
    ("r3d", 18, "r3d_18.kinetics400_8f", 102),
    *[(f"{mc}", 18, f"{mc}_18.kinetics400_8f", None) for mc in ("mc2", "mc3", "mc4", "mc5")],
    *[(f"{mc}", 18, f"{mc}_18.kinetics400_16f", None) for mc in ("rmc2", "rmc3", "rmc4", "rmc5")],
    ("fr2d", 18, "fr2d_18.kinetics400_8f", None),
    ("r2d", 18, "r2d_18.kinetics400_8f", None),
    pytest.param("r2plus1d", 152, "r2plus1d_152.ig65m_32f", 1032, marks=pytest.mark.slow),
    pytest.param("ir_csn", 152, "ir_csn_152.ig65m_32f", 777, marks=pytest.mark.slow),
    pytest.param("ip_csn", 152, "ip_csn_152.ig65m_32f", 1027, marks=pytest.mark.slow),
]


def write_pickle(blobs, path, flat=False):
    """Protocol 2, like the Python 2 cPickle files of the VMZ zoo."""
    with open(path, "wb") as f:
        pickle.dump(blobs if flat else {"blobs": blobs}, f, protocol=2)
    return str(path)


@pytest.mark.parametrize("family,depth,tag,count", CASES)
def test_synthetic_pickle_converts_and_matches_reference(tmp_path, family, depth, tag, count):
    num_classes = get_pretrained_cfg(tag).num_classes
    blobs = synth_blobs(family, depth, num_classes, frames=8)
    if count is not None:
        assert len(blobs) == count
    pkl = write_pickle(blobs, tmp_path / "model.pkl")
    out = convert_caffe2(pkl, tag, str(tmp_path / "out"))
    model = r21d_zoo.create_model(f"local-dir:{out}").eval()
    assert model.num_classes == num_classes
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
    x = torch.randn(1, 3, 8, 56, 56)
    with torch.no_grad():
        logits = model(x).double()
    ref = reference_forward(blobs, family, depth, x)
    rel = (logits - ref).abs().max() / ref.abs().max()
    assert rel < 1e-4, f"relative error {rel:.2e}"


def test_flat_layout_momentum_and_visual_tower(tmp_path, caplog):
    blobs = synth_blobs("r2plus1d", 18, 400)
    extra = {"comp_0_conv_1_w_momentum": np.zeros(3, np.float32), "model_iter": np.array(5)}
    path = write_pickle({**blobs, **extra}, tmp_path / "flat.pkl", flat=True)
    loaded = load_caffe2_pickle(path)
    assert set(loaded) == set(blobs) and "model_iter" in caplog.text
    av = {**synth_blobs("r2plus1d", 18, 400, prefix="v_"), "a_conv1_w": np.zeros((4, 1, 3, 3), np.float32)}
    model = r21d_zoo.create_model("r2plus1d_18")
    sd = caffe2_to_state_dict(av, model)
    model.load_state_dict(sd, strict=True)
    torch.testing.assert_close(sd["stem.0.weight"], torch.from_numpy(av["v_conv1_middle_w"]))


def test_bn_riv_is_copied_as_running_variance():
    blobs = synth_blobs("r3d", 18, 400)
    sd = caffe2_to_state_dict(dict(blobs), r21d_zoo.create_model("r3d_18"))
    torch.testing.assert_close(sd["layer2.0.conv1.1.running_var"], torch.from_numpy(blobs["comp_2_spatbn_1_riv"]))
    torch.testing.assert_close(
        sd["layer2.0.downsample.1.weight"], torch.from_numpy(blobs["shortcut_projection_2_spatbn_s"])
    )


@pytest.mark.parametrize(
    "damage,match",
    [
        ("missing", "comp_3_conv_2_middle_w"),
        ("extra", "comp_99_conv_1_w"),
        ("shape", "comp_1_conv_1_w"),
        ("classes", "last_out_L487_w"),
        ("dtype", "conv1_w"),
    ],
)
def test_damaged_pickles_fail_naming_the_blob(tmp_path, damage, match):
    blobs = synth_blobs("r2plus1d", 18, 400)
    if damage == "missing":
        del blobs["comp_3_conv_2_middle_w"]
    elif damage == "extra":
        blobs["comp_99_conv_1_w"] = np.zeros((2, 2, 1, 1, 1), np.float32)
    elif damage == "shape":
        blobs["comp_1_conv_1_w"] = blobs["comp_1_conv_1_w"][:, :, :2]
    elif damage == "classes":
        blobs = synth_blobs("r2plus1d", 18, 487)
    elif damage == "dtype":
        blobs["conv1_w"] = blobs["conv1_w"].astype(np.float64)
    pkl = write_pickle(blobs, tmp_path / "bad.pkl")
    with pytest.raises(Caffe2ConversionError, match=match):
        convert_caffe2(pkl, "r2plus1d_18.kinetics400_8f", str(tmp_path / "out"))
    assert not (tmp_path / "out" / "model.safetensors").exists()


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": _Exploit(marker)}}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="system"):
        load_caffe2_pickle(str(path))
    with pytest.raises(UnsafePickleError):
        r21d_zoo.create_model("r2plus1d_18", checkpoint_path=str(path), pretrained=True)
    assert not marker.exists()


def test_conversion_is_deterministic(tmp_path):
    pkl = write_pickle(synth_blobs("r3d", 18, 400), tmp_path / "r3d.pkl")
    a = convert_caffe2(pkl, "r3d_18.kinetics400_8f", str(tmp_path / "a"))
    b = convert_caffe2(pkl, "r3d_18.kinetics400_8f", str(tmp_path / "b"))
    assert Path(a, "model.safetensors").read_bytes() == Path(b, "model.safetensors").read_bytes()
    assert Path(a, "config.json").read_bytes() == Path(b, "config.json").read_bytes()


def test_cli_with_bare_architecture_reads_classes_and_frames(tmp_path):
    pkl = write_pickle(synth_blobs("r2d", 18, 359, frames=16), tmp_path / "r2d.pkl")
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "conversion" / "convert_caffe2.py"),
            "--pkl",
            pkl,
            "--model",
            "r2d_18",
            "--out",
            str(out),
            "--verify",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    model = r21d_zoo.create_model(f"local-dir:{out}")
    assert model.num_classes == 359 and model.stem[0].kernel_size == (16, 7, 7)
    assert model.pretrained_cfg.get("label_names") is None and "r2d.pkl" in model.pretrained_cfg["notes"]
    assert (out / "verify.json").is_file() and (out / "README.md").is_file()


def test_torch_port_converter_unwraps_and_loads_strictly(tmp_path):
    import torchvision.models.video as tv_video

    reference = tv_video.mc3_18().eval()
    pth = tmp_path / "mc3.pth"
    torch.save({"model": {f"module.{k}": v for k, v in reference.state_dict().items()}, "epoch": 3}, pth)
    out = convert_torch(str(pth), "mc3_18.tv_kinetics400_16f", str(tmp_path / "out"))
    model = r21d_zoo.create_model(f"local-dir:{out}").eval()
    x = torch.randn(1, 3, 8, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


def test_conversion_readme_lists_a_command_for_every_released_file():
    text = (ROOT / "conversion" / "README.md").read_text()
    listed = text.split(COMMANDS_START, 1)[1].split(COMMANDS_END, 1)[0].strip()
    assert listed == render_conversion_commands(), "run: r21d-zoo cards"
    for name in r21d_zoo.list_pretrained():
        for src in get_pretrained_cfg(name).download_sources():
            assert src["url"] in listed, f"{name}: {src['url']} missing from conversion/README.md"


# Params (M) as VMZ's models.md and the paper's Table 2 print them (one decimal, not consistently rounded).
PAPER_PARAMS_M = {
    "r2plus1d_18": 33.3,
    "r3d_18": 33.3,
    "mc2_18": 11.4,
    "mc3_18": 11.7,
    "mc4_18": 12.7,
    "mc5_18": 16.8,
    "rmc2_18": 33.3,
    "rmc3_18": 33.0,
    "rmc4_18": 32.0,
    "rmc5_18": 27.9,
    "fr2d_18": 11.4,
}


@pytest.mark.parametrize("arch", sorted(PAPER_PARAMS_M))
def test_parameter_counts_match_the_published_ones(arch):
    with torch.device("meta"):
        model = r21d_zoo.create_model(arch)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 1e6 - PAPER_PARAMS_M[arch]) <= 0.1, params


def test_unpublished_class_count_is_read_from_the_file(tmp_path):
    """ir-CSN-50 IG-65M: its class count was never published; the file's last_out_L{N} decides."""
    tag = "ir_csn_50.ig65m_32f"
    assert get_pretrained_cfg(tag).num_classes is None
    with torch.device("meta"):
        assert r21d_zoo.create_model(tag).num_classes == 0  # headless without weights
    blobs = synth_blobs("ir_csn", 50, 123)
    pkl = write_pickle(blobs, tmp_path / "irCSN_50_pretrained_ig65m_f231921860.pkl")
    model = r21d_zoo.create_model(tag, pretrained=True, checkpoint_path=pkl).eval()
    assert model.num_classes == 123 and model.pretrained_cfg["num_classes"] == 123
    x = torch.randn(1, 3, 8, 56, 56)
    with torch.no_grad():
        logits = model(x).double()
    ref = reference_forward(blobs, "ir_csn", 50, x)
    assert (logits - ref).abs().max() / ref.abs().max() < 1e-4


@pytest.mark.slow
def test_gblend_visual_tower_converts_and_names_the_ignored_audio_blobs(tmp_path, caplog):
    tag = "ip_csn_152.ig65m_audioset_ft_kinetics400_32f"
    visual = synth_blobs("ip_csn", 152, 400, prefix="v_")
    audio = {"a_conv1_w": np.zeros((4, 1, 3, 3), np.float32), "av_last_out_L400_w": np.zeros((400, 8), np.float32)}
    pkl = write_pickle({**visual, **audio}, tmp_path / "g_b_ip_csn_152_ig_audioset_ft_kinetics.pkl")
    model = r21d_zoo.create_model(tag, pretrained=True, checkpoint_path=pkl).eval()
    assert model.num_classes == 400 and len(model.pretrained_cfg["label_names"]) == 400
    assert "ignoring 2 audio/fusion blobs: a_conv1_w, av_last_out_L400_w" in caplog.text
    x = torch.randn(1, 3, 8, 56, 56)
    with torch.no_grad():
        logits = model(x).double()
    ref = reference_forward({k[2:]: v for k, v in visual.items()}, "ip_csn", 152, x)
    assert (logits - ref).abs().max() / ref.abs().max() < 1e-4
