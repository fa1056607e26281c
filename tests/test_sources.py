"""Where weights come from, beyond one URL: mmaction2's CSN ports (their key names), backbone-only files, the order of
sources (hash-checked first), mirrors without a hash (used only after `verify-weights`), and `publish`."""

import json
import pickle
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import r21d_zoo
from r21d_zoo.cli import main
from r21d_zoo.models import WeightsError, get_pretrained_cfg
from r21d_zoo.models import _registry
from r21d_zoo.models._pretrained import PretrainedCfg, generate_default_cfgs

from caffe2_reference import reference_forward, synth_blobs
from util import loopback_server

R50 = (3, 4, 6, 3)
X = dict(frames=4, size=32)


# --- mmaction2's CSN checkpoints, written from mmaction2's ResNet3dCSN / CSNBottleneck3d / I3DHead ----------------


def mmaction2_csn(mode: str, num_classes: int = 400, prefix: str = "backbone.", tracked: bool = True, seed: int = 0):
    """A state dict with mmaction2's key names and shapes: ConvModule = ``.conv`` + ``.bn``; stem ``conv1`` (3x7x7);
    bottleneck conv1 1x1x1, conv2 = [1x1x1 ConvModule (ip only), depthwise 3x3x3 ConvModule], conv3 1x1x1,
    ``downsample`` on the first block of each stage; head ``cls_head.fc_cls``."""
    g = torch.Generator().manual_seed(seed)
    sd: Dict[str, torch.Tensor] = {}

    def conv(name: str, *shape: int) -> None:
        sd[prefix + name + ".conv.weight"] = torch.randn(*shape, generator=g) * (2.0 / np.prod(shape[1:])) ** 0.5

    def bn(name: str, c: int) -> None:
        p = prefix + name + ".bn."
        sd[p + "weight"] = torch.rand(c, generator=g) + 0.5
        sd[p + "bias"] = torch.randn(c, generator=g) * 0.1
        sd[p + "running_mean"] = torch.randn(c, generator=g) * 0.1
        sd[p + "running_var"] = torch.rand(c, generator=g) + 0.5
        if tracked:
            sd[p + "num_batches_tracked"] = torch.tensor(100)

    conv("conv1", 64, 3, 3, 7, 7), bn("conv1", 64)
    inplanes = 64
    for i, blocks in enumerate(R50):
        planes = 64 * 2**i
        for b in range(blocks):
            unit = f"layer{i + 1}.{b}."
            conv(unit + "conv1", planes, inplanes, 1, 1, 1), bn(unit + "conv1", planes)
            if mode == "ip":
                conv(unit + "conv2.0", planes, planes, 1, 1, 1), bn(unit + "conv2.0", planes)
                conv(unit + "conv2.1", planes, 1, 3, 3, 3), bn(unit + "conv2.1", planes)
            else:
                conv(unit + "conv2.0", planes, 1, 3, 3, 3), bn(unit + "conv2.0", planes)
            conv(unit + "conv3", planes * 4, planes, 1, 1, 1), bn(unit + "conv3", planes * 4)
            if b == 0:
                conv(unit + "downsample", planes * 4, inplanes, 1, 1, 1), bn(unit + "downsample", planes * 4)
            inplanes = planes * 4
    if num_classes:
        sd["cls_head.fc_cls.weight"] = torch.randn(num_classes, 2048, generator=g) * 0.02
        sd["cls_head.fc_cls.bias"] = torch.randn(num_classes, generator=g) * 0.1
    return sd


def mmaction2_forward(sd: Dict[str, torch.Tensor], x: torch.Tensor, prefix: str = "backbone.") -> torch.Tensor:
    """mmaction2's CSN forward over its own keys (float64, BN eps 1e-3 as in ResNet3dCSN's norm_cfg): pooled features,
    then logits when there is a head. Temporal and spatial strides (1, 2, 2, 2) sit in the depthwise conv and the
    downsample; max-pool (1, 3, 3) / (1, 2, 2) after the stem."""
    w = {k: v.double() for k, v in sd.items()}
    x = x.double()

    def unit(x, name, stride=1, pad=0, groups=1, relu=True):
        x = F.conv3d(x, w[prefix + name + ".conv.weight"], stride=stride, padding=pad, groups=groups)
        p = prefix + name + ".bn."
        x = F.batch_norm(x, w[p + "running_mean"], w[p + "running_var"], w[p + "weight"], w[p + "bias"], eps=1e-3)
        return F.relu(x) if relu else x

    x = unit(x, "conv1", (1, 2, 2), (1, 3, 3))
    x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    ip = any(k.endswith("conv2.1.conv.weight") for k in sd)
    for i, blocks in enumerate(R50):
        for b in range(blocks):
            name, s = f"layer{i + 1}.{b}.", 2 if (b == 0 and i > 0) else 1
            out = unit(x, name + "conv1")
            if ip:
                out = unit(out, name + "conv2.0", relu=False)
            dw = name + ("conv2.1" if ip else "conv2.0")
            out = unit(out, dw, s, 1, groups=out.shape[1])
            out = unit(out, name + "conv3", relu=False)
            shortcut = unit(x, name + "downsample", s, relu=False) if b == 0 else x
            x = F.relu(out + shortcut)
    feats = x.mean(dim=(2, 3, 4))
    if "cls_head.fc_cls.weight" not in w:
        return feats
    return feats @ w["cls_head.fc_cls.weight"].t() + w["cls_head.fc_cls.bias"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("mode", ["ir", "ip"])
def test_mmaction2_csn_checkpoint_loads_strictly_and_computes_what_mmaction2_does(tmp_path, mode):
    sd = mmaction2_csn(mode)
    path = tmp_path / "vmz_csn.pth"
    torch.save({"meta": {"mmaction2_version": "0.15.0"}, "state_dict": sd}, path)  # mmcv's checkpoint layout
    model = r21d_zoo.create_model(f"{mode}_csn_50", checkpoint_path=str(path)).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert _rel(model(x), mmaction2_forward(sd, x)) < 1e-4


def test_mmaction2_backbone_only_file_needs_a_new_head(tmp_path):
    sd = mmaction2_csn("ir", num_classes=0, prefix="", tracked=False)  # like ircsn_from_scratch_r50_ig65m
    path = tmp_path / "ircsn_from_scratch_r50_ig65m.pth"
    torch.save({"state_dict": sd}, path)
    x = torch.randn(1, 3, 4, 32, 32)
    features = r21d_zoo.create_model("ir_csn_50", num_classes=0, checkpoint_path=str(path)).eval()
    with torch.no_grad():
        assert _rel(features(x), mmaction2_forward(sd, x, prefix="")) < 1e-4
    head = r21d_zoo.create_model("ir_csn_50", num_classes=7, checkpoint_path=str(path))
    assert head.fc.weight.shape == (7, 2048) and torch.equal(
        head.layer4[2].conv3[0].weight, features.layer4[2].conv3[0].weight
    )
    with pytest.raises(WeightsError, match=r"backbone only \(no fc.weight\): pass num_classes=N"):
        r21d_zoo.create_model("ir_csn_50.ig65m_ft_kinetics400_32f", checkpoint_path=str(path))  # a 400-class tag


def test_unknown_mmaction2_key_is_named(tmp_path):
    sd = mmaction2_csn("ir", num_classes=0, prefix="")
    sd["layer1.0.conv2.0.attention.weight"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "odd.pth")
    with pytest.raises(WeightsError, match=r"odd.pth: mmaction2 ir-CSN key\(s\) with no counterpart here: "):
        r21d_zoo.create_model("ir_csn_50", num_classes=0, checkpoint_path=str(tmp_path / "odd.pth"))


def test_registry_mirrors_csn_tags_on_mmaction2_with_hashes():
    full = get_pretrained_cfg("ip_csn_152.ig65m_ft_kinetics400_32f").download_sources()
    assert full[0]["url"].endswith("vmz_ipcsn_ig65m_pretrained_r152_32x2x1_58e_kinetics400_rgb_20210617-c3be9793.pth")
    assert full[0]["hash_prefix"] == "c3be9793" and full[0]["head"] and full[1]["mirror"] is False
    assert not full[-1]["hash_prefix"] and "bjuncek" in full[-1]["url"]  # unhashed mirror last
    backbone = get_pretrained_cfg("ir_csn_50.ig65m_32f").download_sources()[0]
    assert backbone["hash_prefix"] == "ce545a37" and backbone["head"] is False


# --- a loopback server that records every request --------------------------------------------------------------------


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    served, requests = tmp_path / "served", []
    served.mkdir()

    with loopback_server(served, requests=requests) as base:
        yield served, base, requests


def _hashed(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    target = path.with_name(f"{path.stem}-{digest}{path.suffix}")
    path.rename(target)
    return target.name


def _pkl(served: Path, seed: int = 0) -> Dict[str, np.ndarray]:
    blobs = synth_blobs("ir_csn", 50, 400, seed=seed)
    with open(served / "irCSN_50.pkl", "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    return blobs


TAG = "ir_csn_50.ig65m_ft_kinetics400_32f"


def _original_gone(served: Path, torch_home: Path) -> None:
    """The original's link is dead and nothing of it is cached."""
    (served / "irCSN_50.pkl").unlink()
    for f in (torch_home / "checkpoints").glob("irCSN_50.pkl*"):
        f.unlink()


def _patch_tag(monkeypatch, base: str, mirrors: List[dict]) -> None:
    """The registry entry of TAG, pointing at the loopback server (what `verify-weights TAG` reads)."""
    cfg = get_pretrained_cfg(TAG).replace(url=f"{base}/irCSN_50.pkl", mirrors=tuple(mirrors))
    monkeypatch.setitem(_registry._model_default_cfgs["ir_csn_50"], TAG.split(".")[1], cfg)


def test_hashed_source_is_used_before_the_unhashed_original(server, torch_home, monkeypatch):
    served, base, requests = server
    _pkl(served)
    sd = mmaction2_csn("ir")
    torch.save({"state_dict": sd}, served / "vmz_ircsn.pth")
    mirror = _hashed(served / "vmz_ircsn.pth")
    backbone = mmaction2_csn("ir", num_classes=0, prefix="", seed=1)
    torch.save({"state_dict": backbone}, served / "ircsn_backbone.pth")
    headless = _hashed(served / "ircsn_backbone.pth")
    hashed = (
        lambda name, head=True: dict(  # noqa: E731
            url=f"{base}/{name}", source_format="pth", hash_prefix=name.rsplit("-")[-1][:8], head=head
        )
    )
    _patch_tag(monkeypatch, base, [hashed(mirror)])
    x = torch.randn(1, 3, 4, 32, 32)
    model = r21d_zoo.create_model(TAG, pretrained=True).eval()
    with torch.no_grad():
        assert _rel(model(x), mmaction2_forward(sd, x)) < 1e-4
    assert requests == [mirror]  # the original .pkl was never asked for

    _patch_tag(monkeypatch, base, [hashed(headless, head=False)])
    requests.clear()
    r21d_zoo.create_model(TAG, pretrained=True)  # the classifier is needed: the backbone-only file is passed over
    assert requests == ["irCSN_50.pkl"]
    requests.clear()
    model = r21d_zoo.create_model(TAG, pretrained=True, num_classes=5).eval()  # a new head: hashed backbone first
    assert requests == [headless]
    with torch.no_grad():
        assert (
            _rel(model.forward_head(model.forward_features(x), pre_logits=True), mmaction2_forward(backbone, x, ""))
            < 1e-4
        )


def test_unhashed_mirror_is_used_only_after_verify_weights_matched_it(server, torch_home, monkeypatch, capsys):
    served, base, requests = server
    blobs = _pkl(served)
    good = r21d_zoo.create_model("ir_csn_50", num_classes=400)
    from r21d_zoo.models._caffe2 import caffe2_to_state_dict

    torch.save(caffe2_to_state_dict(blobs, good), served / "port_good.pth")  # the same weights, our key names
    torch.save(r21d_zoo.create_model("ir_csn_50", num_classes=400).state_dict(), served / "port_bad.pth")
    unhashed = lambda name: dict(url=f"{base}/{name}", source_format="pth", hash_prefix=None)  # noqa: E731
    _patch_tag(monkeypatch, base, [unhashed("port_good.pth")])
    x = torch.randn(1, 3, 4, 32, 32)
    reference = reference_forward(blobs, "ir_csn", 50, x)

    (served / "irCSN_50.pkl").rename(served / "away.pkl")  # the original's link is dead
    with pytest.raises(WeightsError, match=r"port_good.pth: skipped, a mirror without a published hash, not yet "):
        r21d_zoo.create_model(TAG, pretrained=True)
    assert requests == ["irCSN_50.pkl"]  # the unchecked mirror was not even downloaded

    (served / "away.pkl").rename(served / "irCSN_50.pkl")
    assert main(["verify-weights", TAG, "--frames", "4", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "reference    original  no hash  " in out and "matches      mirror    no hash  " in out
    assert "features max rel diff" in out and "same top-5" in out
    record = json.loads((torch_home / "checkpoints" / "port_good.pth.verified.json").read_text())
    assert record["ok"] is True and record["reference"] == f"{base}/irCSN_50.pkl"

    _original_gone(served, torch_home)
    model = r21d_zoo.create_model(TAG, pretrained=True).eval()  # now the verified mirror stands in
    with torch.no_grad():
        assert _rel(model(x), reference) < 1e-4

    _pkl(served)
    _patch_tag(monkeypatch, base, [unhashed("port_bad.pth")])
    assert main(["verify-weights", TAG, "--frames", "4", "--size", "32"]) == 1
    assert "differs      mirror" in capsys.readouterr().out
    _original_gone(served, torch_home)
    with pytest.raises(WeightsError, match=r"port_bad.pth: skipped, its outputs differ from the original's"):
        r21d_zoo.create_model(TAG, pretrained=True)

    (torch_home / "checkpoints" / "port_good.pth").write_bytes(b"tampered")  # changed after it was verified
    _patch_tag(monkeypatch, base, [unhashed("port_good.pth")])
    with pytest.raises(WeightsError, match=r"port_good.pth changed since it was checked against the original"):
        r21d_zoo.create_model(TAG, pretrained=True)


# --- publish ----------------------------------------------------------------------------------------------------------


def test_published_tags_gain_their_hub_copy_from_the_one_org_constant():
    cfgs = {"a.x": PretrainedCfg(url="u"), "a.y": PretrainedCfg(url="v")}
    out = generate_default_cfgs(cfgs, published=["a.y"], hub_org="acme")
    assert out["a"]["x"].hf_hub_id is None and out["a"]["y"].hf_hub_id == "acme/a.y"
    with pytest.raises(ValueError, match="a.z"):
        generate_default_cfgs(cfgs, published=["a.z"])
    from r21d_zoo.models.video_resnet import PUBLISHED_ON_HUB

    for name in r21d_zoo.list_pretrained():
        hub = get_pretrained_cfg(name).hf_hub_id
        assert hub == (f"{r21d_zoo.models.HF_HUB_ORG}/{name}" if name in PUBLISHED_ON_HUB else None)


def test_publish_dry_run_folders_load_locally_and_from_an_offline_hub_cache(torch_home, tmp_path, capsys):
    from test_pretrained import _fake_hub_cache

    tag = "r3d_18.kinetics400_8f"
    (torch_home / "checkpoints").mkdir(parents=True)
    with open(torch_home / "checkpoints" / "r3d_d18_l8.pkl", "wb") as f:  # as if downloaded before
        pickle.dump({"blobs": synth_blobs("r3d", 18, 400)}, f, protocol=2)
    out = tmp_path / "publish"
    code = main(["publish", "--org", "acme", "--tags", tag, "r3d_18.kinetics400_16f", "--dry-run", str(out)])
    printed = capsys.readouterr().out
    assert code == 1 and f"acme/{tag}: {out / 'acme' / tag}" in printed  # one tag done, the uncached one recorded
    assert "acme/r3d_18.kinetics400_16f: FAILED" in printed and "1 of 2 failed" in printed
    folder = out / "acme" / tag
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["pretrained_cfg"]["hf_hub_id"] == f"acme/{tag}" and config["pretrained_cfg"]["tag"] == "kinetics400_8f"
    )
    assert f'create_model("hf-hub:acme/{tag}")' in (folder / "README.md").read_text()

    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        expected = r21d_zoo.create_model(tag, pretrained=True).eval()(x)
        assert torch.equal(r21d_zoo.create_model(f"local-dir:{folder}").eval()(x), expected)
        cache = tmp_path / "hf"
        _fake_hub_cache(cache, f"acme/{tag}", folder)
        hub = r21d_zoo.create_model(f"hf-hub:acme/{tag}", cache_dir=str(cache)).eval()
        assert torch.equal(hub(x), expected) and hub.pretrained_cfg["hf_hub_id"] == f"acme/{tag}"
        (torch_home / "checkpoints" / "r3d_d18_l8.pkl").unlink()  # once published, the registry's hub copy is enough
        overlay = dict(hf_hub_id=f"acme/{tag}")
        registry = r21d_zoo.create_model(tag, pretrained=True, cache_dir=str(cache), pretrained_cfg_overlay=overlay)
        assert torch.equal(registry.eval()(x), expected)
