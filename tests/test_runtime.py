"""One precision vocabulary (``auto|bf16|fp16|none``) with one meaning, for every command that has ``--amp``, the
training loop, extraction, evaluation and ``optimize_for_inference``."""

import re
from pathlib import Path

import pytest
import torch

import r21d_zoo
from r21d_zoo.cli import build_parser, command_table
from r21d_zoo.deploy.placement import (
    AMP_CHOICES,
    AMP_HELP,
    INFERENCE_AMP_CHOICES,
    INFERENCE_AMP_HELP,
    Placement,
    amp_dtype,
)
from r21d_zoo.infer.config import ExtractConfig, InferenceOptions
from r21d_zoo.infer.features import FeatureRunner
from r21d_zoo.train.distributed import WorldInfo
from r21d_zoo.train.loop import TrainConfig, _prepare
from util import TINY

PACKAGE = Path(r21d_zoo.__file__).parent


def _amp_options():
    parser = build_parser()
    found = {}
    for words in command_table():
        sub = parser
        for word in words:
            sub = next(a for a in sub._actions if a.dest in ("command", "subcommand")).choices[word]
        for action in sub._actions:
            if "--amp" in action.option_strings:
                found[" ".join(words)] = (tuple(action.choices), action.default, action.help)
    return found


def test_every_amp_option_has_the_same_values_default_and_help():
    found = _amp_options()
    assert {"extract", "finetune", "evaluate", "distill", "pretrain"} <= set(found)
    inference = {k: found.pop(k) for k in ("extract",)}  # the inference commands that also offer int8
    assert set(found.values()) == {(AMP_CHOICES, "auto", AMP_HELP)}, found
    assert set(inference.values()) == {(INFERENCE_AMP_CHOICES, "auto", INFERENCE_AMP_HELP)}, inference
    assert INFERENCE_AMP_CHOICES == AMP_CHOICES + ("int8",) and INFERENCE_AMP_HELP.startswith(AMP_HELP)


def test_each_value_means_one_dtype_on_each_device():
    cpu = torch.device("cpu")
    assert [amp_dtype(a, cpu) for a in AMP_CHOICES] == [None, torch.bfloat16, torch.float16, None]
    assert amp_dtype(None, cpu) is None
    if torch.cuda.is_available():
        assert amp_dtype("auto", "cuda") in (torch.bfloat16, torch.float16)
    with pytest.raises(ValueError, match="amp must be one of"):
        amp_dtype("int4", cpu)
    with pytest.raises(ValueError, match="int8 is not an autocast dtype"):
        amp_dtype("int8", cpu)


@pytest.mark.parametrize("amp", AMP_CHOICES)
def test_training_extraction_and_inference_copies_resolve_a_value_alike(amp):
    expected = Placement.create("cpu", amp)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY)
    groups = {"all": (model.parameters(), 1.0)}
    runtime, _, scaler = _prepare(model, TrainConfig(amp=amp, device="cpu"), groups, WorldInfo())
    assert runtime == expected and scaler.is_enabled() == (amp == "fp16")
    spec = r21d_zoo.ClipSpec(num_frames=4, resize_size=32, crop_size=28)
    eager = InferenceOptions("cpu", amp, runtime="eager")  # auto may take a runtime with the precision inside it
    assert FeatureRunner(model, spec, ExtractConfig(), eager).place == expected
    optimised = r21d_zoo.optimize_for_inference(model, amp=amp, torchscript=False)
    assert optimised.place.dtype == expected.dtype


def test_the_dtype_map_is_written_once():
    """No module but deploy/placement.py maps precision names to dtypes or opens autocast itself."""
    pattern = re.compile(r"torch\.autocast\(|\"bf16\":\s*torch\.")
    users = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text()))
    assert users == ["deploy/placement.py"]


def test_csn_runs_in_channels_last_on_the_cpu_by_default_with_the_same_features():
    """oneDNN's depthwise Conv3d is several times faster in channels_last_3d than in NCDHW (ir-CSN-152: 0.63-0.74x of
    its time here); dense models keep their layout unless asked."""
    torch.manual_seed(0)
    csn = r21d_zoo.create_model("ir_csn_152", num_classes=3, **TINY).eval()
    dense = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY).eval()
    assert Placement.create("cpu", "none", None, csn).channels_last
    assert not Placement.create("cpu", "none", None, dense).channels_last
    assert not Placement.create("cpu", "none", False, csn).channels_last  # asked: as asked
    spec = r21d_zoo.ClipSpec(num_frames=4, resize_size=32, crop_size=28)
    frames = torch.randint(0, 255, (2, 4, 32, 32, 3), dtype=torch.uint8)
    default = FeatureRunner(csn, spec, ExtractConfig(), InferenceOptions("cpu", "none"))
    contiguous = FeatureRunner(csn, spec, ExtractConfig(), InferenceOptions("cpu", "none", channels_last=False))
    assert default.place.channels_last and not contiguous.place.channels_last
    torch.testing.assert_close(default(frames), contiguous(frames), rtol=1e-5, atol=1e-6)
