"""Registry, torch.hub and CLI: everything is derived from one registry."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

import r21d_zoo
from r21d_zoo.cli import main as cli_main
from r21d_zoo.deploy.cards import registry_config, render_model_card
from r21d_zoo.models._registry import list_aliases

ROOT = Path(__file__).resolve().parents[1]


def test_names_are_unique_lowercase_arch_dot_tag():
    pretrained = r21d_zoo.list_pretrained()
    assert len(pretrained) == len(set(pretrained))
    for name in pretrained:
        arch, tag = name.split(".")
        assert arch in r21d_zoo.list_models() and name == name.lower()
        assert tag.endswith("f") and tag.rstrip("f").split("_")[-1].isdigit(), f"{name}: tag should end in _<N>f"


def test_list_filters():
    assert r21d_zoo.list_models("r2plus1d_*") == [
        "r2plus1d_18",
        "r2plus1d_34",
        "r2plus1d_50",
        "r2plus1d_101",
        "r2plus1d_152",
    ]
    assert set(r21d_zoo.list_pretrained("r2plus1d_34")) >= {"r2plus1d_34.ig65m_32f", "r2plus1d_34.ig65m_8f"}
    assert "r3d_50" not in {n.split(".")[0] for n in r21d_zoo.list_pretrained()}  # no weights released
    assert all("csn" not in n for n in r21d_zoo.list_models(exclude_filters="*csn*"))


def test_aliases_of_anchor_projects_resolve():
    aliases = list_aliases()
    assert aliases["r2plus1d_34_32_ig65m"] == "r2plus1d_34.ig65m_32f"
    with torch.device("meta"):
        model = r21d_zoo.create_model("r2plus1d_34_8_ig65m")
    assert model.num_classes == 487 and model.pretrained_cfg["tag"] == "ig65m_8f"


def _load_hubconf():
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hubconf_exposes_exactly_the_registry():
    hub = _load_hubconf()
    public = sorted(k for k, v in vars(hub).items() if callable(v) and not k.startswith("_"))
    assert public == sorted(r21d_zoo.list_models())
    assert "ig65m_32f" in hub.r2plus1d_34.__doc__


def test_torch_hub_load_local():
    model = torch.hub.load(str(ROOT), "r2plus1d_34", source="local", num_classes=10, channel_multiplier=0.125)
    out = model(torch.randn(1, 3, 8, 32, 32))
    assert out.shape == (1, 10)
    full = torch.hub.load(str(ROOT), "r2plus1d_34", source="local", num_classes=10)
    assert full.fc.in_features == 512 and full.fc.out_features == 10


def test_cli_list_and_info(capsys):
    assert cli_main(["list"]) == 0
    assert capsys.readouterr().out.split() == r21d_zoo.list_models()
    assert cli_main(["list", "--pretrained", "ip_csn_*"]) == 0
    assert capsys.readouterr().out.split() == r21d_zoo.list_pretrained("ip_csn_*")
    assert cli_main(["info", "r2plus1d_34.ig65m_ft_kinetics400_32f"]) == 0
    out = capsys.readouterr().out
    assert "80.0 / 94.2" in out and "63.70 M" in out and "bn_eps" in out and "--card" in out
    assert "vmz-weights-no-licence-stated" in out
    assert cli_main(["info", "r2plus1d_34.ig65m_ft_kinetics400_32f", "--card"]) == 0  # rendered, no repository needed
    assert capsys.readouterr().out == render_model_card(registry_config("r2plus1d_34.ig65m_ft_kinetics400_32f"))
    assert cli_main(["info", "r2plus1d_43"]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert cli_main(["list", "--pretrained", "csn"]) == 0  # a bare word matches anywhere
    assert capsys.readouterr().out.split() == r21d_zoo.list_pretrained("*csn*") and r21d_zoo.list_pretrained("*csn*")
    assert cli_main(["info", "r2plus1d_50"]) == 0
    out = capsys.readouterr().out
    assert "no weights, so no class names" in out and "not published" in out and "None" not in out
    assert cli_main(["list", "--pretrained", "nomatch*"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no pretrained weight matches 'nomatch*'" in captured.err  # not silence


def test_console_script_installed():
    out = subprocess.run(
        [sys.executable, "-m", "r21d_zoo", "list", "--pretrained", "mc3_18*"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out == r21d_zoo.list_pretrained("mc3_18*") and "rmc3_18.kinetics400_8f" not in out
