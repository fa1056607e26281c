"""Pretrained weights: configs per tag, strict loading, URL (loopback HTTP), HF Hub (offline cache), export."""

import hashlib
import http.server
import json
import logging
import pickle
from pathlib import Path

import pytest
import torch
import torchvision.models.video as tv_video
from safetensors.torch import save_file

import r21d_zoo
from r21d_zoo.commands.cards import TABLE_END, TABLE_START, card_path, render_model_table
from r21d_zoo.deploy.cards import registry_config, render_model_card
from r21d_zoo.models import WeightsError, adapt_input_conv, get_pretrained_cfg
from r21d_zoo.models import load_into_model, read_state_dict
from r21d_zoo.models._loading import check_source_classes
from r21d_zoo.models._pretrained import set_derived_cfg
from r21d_zoo.models import ClipSpec
from util import TINY, loopback_server

from caffe2_reference import reference_forward, synth_blobs

ROOT = Path(__file__).resolve().parents[1]


# --- every tag resolves to a consistent config ----------------------------------------------------------------------


@pytest.mark.parametrize("name", r21d_zoo.list_pretrained())
def test_pretrained_cfg_consistent_with_model(name):
    cfg = get_pretrained_cfg(name)
    with torch.device("meta"), torch.no_grad():
        model = r21d_zoo.create_model(name).eval()
        out = model(torch.empty(1, *cfg.input_size))
    if cfg.num_classes is None:  # never published: the file's classifier decides; without weights, headless
        assert model.num_classes == 0 and out.shape[1] == model.num_features
    else:
        assert model.num_classes == cfg.num_classes == out.shape[1]
    assert cfg.input_size == (cfg.in_chans, cfg.clip.num_frames, cfg.clip.crop_size, cfg.clip.crop_size)
    assert model.stem[0].in_channels == cfg.in_chans == len(cfg.clip.mean) == len(cfg.clip.std)
    assert ClipSpec.from_model(model) == cfg.clip  # the model carries its weights' clip, flat in pretrained_cfg
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)}
    assert eps == {cfg.model_args["bn_eps"]}
    assert isinstance(model.stem[-1], torch.nn.MaxPool3d) == cfg.model_args.get("pool1", False)
    assert model.pretrained_cfg["architecture"] == name.split(".")[0] and model.pretrained_cfg["tag"] == cfg.tag
    if cfg.label_set:
        assert cfg.num_classes in (400, None) and len(cfg.label_names) == 400
    else:
        assert cfg.num_classes in (359, 487, None) and model.pretrained_cfg["label_names"] is None
    assert cfg.url and cfg.source_file and cfg.license and cfg.paper_ids
    for m in cfg.metrics:
        assert m["protocol"] and m["source"] and 0 < m["value"] < 100
    for src in cfg.download_sources():
        if src["source_format"] == "pth" and "ig65m-pytorch" in src["url"]:
            assert src["hash_prefix"] and src["url"].endswith(f"-{src['hash_prefix']}.pth")


def test_class_counts_of_ig65m_heads():
    assert get_pretrained_cfg("r2plus1d_34.ig65m_8f").num_classes == 487
    assert get_pretrained_cfg("r2plus1d_34.ig65m_32f").num_classes == 359
    assert get_pretrained_cfg("r2plus1d_152.sports1m_32f").num_classes == 487
    assert get_pretrained_cfg("r2plus1d_34.ig65m_ft_kinetics400_32f").label_names[0] == "abseiling"


def test_torchvision_tag_selects_compatible_architecture():
    with torch.device("meta"):
        tv = r21d_zoo.create_model("r2plus1d_18.tv_kinetics400_16f")
        vmz = r21d_zoo.create_model("r2plus1d_18")
    assert sum(p.numel() for p in tv.parameters()) == 31_505_325
    assert sum(p.numel() for p in vmz.parameters()) == 33_370_839


# --- strict loading from a checkpoint file --------------------------------------------------------------------------


@pytest.fixture
def tv_checkpoint(tmp_path):
    reference = tv_video.r3d_18(num_classes=400).eval()
    path = tmp_path / "r3d_18.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_checkpoint_path_loads_strictly(tv_checkpoint):
    reference, path = tv_checkpoint
    model = r21d_zoo.create_model("r3d_18.tv_kinetics400_16f", pretrained=True, checkpoint_path=str(path)).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_new_num_classes_drops_exactly_the_classifier(tv_checkpoint):
    reference, path = tv_checkpoint
    model = r21d_zoo.create_model(
        "r3d_18.tv_kinetics400_16f", pretrained=True, checkpoint_path=str(path), num_classes=10
    )
    own, ref = model.state_dict(), reference.state_dict()
    assert model.fc.out_features == 10 and set(own) == set(ref)
    for k in ref:
        if not k.startswith("fc."):
            assert torch.equal(own[k], ref[k]), k
    # and a file that lacks anything else still fails, even with a new head
    broken = {k: v for k, v in ref.items() if k != "layer3.1.conv2.1.running_var"}
    torch.save(broken, path)
    with pytest.raises(WeightsError, match="layer3.1.conv2.1.running_var"):
        r21d_zoo.create_model("r3d_18.tv_kinetics400_16f", pretrained=True, checkpoint_path=str(path), num_classes=10)


def test_features_only_and_in_chans_adaptation_from_weights(tv_checkpoint):
    reference, path = tv_checkpoint
    flow = r21d_zoo.create_model("r3d_18.tv_kinetics400_16f", pretrained=True, checkpoint_path=str(path), in_chans=2)
    expected = reference.stem[0].weight[:, :2] * 1.5
    torch.testing.assert_close(flow.stem[0].weight, expected)
    gray = adapt_input_conv(1, reference.stem[0].weight)
    torch.testing.assert_close(gray, reference.stem[0].weight.sum(1, keepdim=True))
    feats = r21d_zoo.create_model(
        "r3d_18.tv_kinetics400_16f", pretrained=True, checkpoint_path=str(path), features_only=True, out_indices=(4,)
    )
    torch.testing.assert_close(feats.layer4[1].conv2[0].weight, reference.layer4[1].conv2[0].weight)


@pytest.mark.parametrize(
    "problem,match",
    [
        ("classes", r"r3d_18.pth has 10 classes but the model was built with 400.*num_classes=10"),
        ("architecture", r"mc3_18.*shape mismatch: layer2.0.conv1.0.weight"),
        ("truncated", r"could not read checkpoint .*r3d_18.pth.*truncated"),
        ("missing", r"checkpoint file .*nope.pth does not exist"),
    ],
)
def test_bad_checkpoints_name_file_expected_and_found(tv_checkpoint, problem, match):
    reference, path = tv_checkpoint
    name = "r3d_18.tv_kinetics400_16f"
    if problem == "classes":
        torch.save(tv_video.r3d_18(num_classes=10).state_dict(), path)
    elif problem == "architecture":
        name = "mc3_18.tv_kinetics400_16f"
    elif problem == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif problem == "missing":
        path = path.parent / "nope.pth"
    with pytest.raises(WeightsError, match=match):
        r21d_zoo.create_model(name, pretrained=True, checkpoint_path=str(path))


# --- URL download through a loopback HTTP server --------------------------------------------------------------------


@pytest.fixture
def http_dir(tmp_path, monkeypatch):
    """A loopback HTTP server; the network is allowed for these tests (conftest sets HF_HUB_OFFLINE=1 otherwise)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    served = tmp_path / "served"
    served.mkdir()
    with loopback_server(served) as base:
        yield served, base


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_url_download_with_hash_check(http_dir, torch_home, caplog):
    served, base = http_dir
    caplog.set_level(logging.INFO, logger="r21d_zoo.progress")
    source = r21d_zoo.create_model("r3d_18.tv_kinetics400_16f", **TINY).eval()
    tmp = served / "tmp.pth"
    torch.save(source.state_dict(), tmp)
    digest = _sha(tmp)[:8]
    good = served / f"tiny_r3d-{digest}.pth"
    tmp.rename(good)
    overlay = dict(url=f"{base}/{good.name}", hash_prefix=digest, mirrors=())
    model = r21d_zoo.create_model(
        "r3d_18.tv_kinetics400_16f", pretrained=True, pretrained_cfg_overlay=overlay, **TINY
    ).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x))
    assert (torch_home / "checkpoints" / good.name).is_file()
    lines = [r.getMessage() for r in caplog.records if r.name == "r21d_zoo.progress"]  # stderr is not a terminal
    assert lines[0] == f"download {good.name}: started" and lines[-1].endswith(" s, done, " + lines[-1].split(", ")[-1])
    assert f"{good.stat().st_size / 2**20:.1f} MB in" in lines[-1] and "MB/s" in lines[-1]

    corrupted = served / f"tiny_r3d_bad-{digest}.pth"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    overlay = dict(url=f"{base}/{corrupted.name}", hash_prefix=digest, mirrors=())
    with pytest.raises(
        WeightsError,
        match=rf"hash mismatch for {base}/{corrupted.name}: expected sha256 starting "
        rf"with {digest}",
    ):
        r21d_zoo.create_model("r3d_18.tv_kinetics400_16f", pretrained=True, pretrained_cfg_overlay=overlay, **TINY)
    assert not (torch_home / "checkpoints" / corrupted.name).exists()
    assert not list((torch_home / "checkpoints").glob("*.part"))


def test_caffe2_pkl_url_converted_on_the_fly(http_dir, torch_home):
    """create_model(tag, pretrained=True) for a .pkl source: download, restricted unpickle, convert, strict load."""
    served, base = http_dir
    blobs = synth_blobs("fr2d", 18, 400)
    with open(served / "r2df_d18_l8.pkl", "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    overlay = dict(url=f"{base}/r2df_d18_l8.pkl", mirrors=())
    model = r21d_zoo.create_model("fr2d_18.kinetics400_8f", pretrained=True, pretrained_cfg_overlay=overlay).eval()
    x = torch.randn(1, 3, 8, 56, 56)
    with torch.no_grad():
        logits = model(x).double()
    ref = reference_forward(blobs, "fr2d", 18, x)
    assert (logits - ref).abs().max() / ref.abs().max() < 1e-4


def test_caffe2_conversion_is_cached_once_and_a_damaged_cache_is_rebuilt(http_dir, torch_home, monkeypatch, caplog):
    import r21d_zoo.models._files as files

    served, base = http_dir
    blobs = synth_blobs("r3d", 18, 400)
    with open(served / "r3d_d18_l8.pkl", "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    conversions = []
    convert = files.caffe2_to_state_dict
    monkeypatch.setattr(files, "caffe2_to_state_dict", lambda *a, **k: conversions.append(1) or convert(*a, **k))
    overlay = dict(url=f"{base}/r3d_d18_l8.pkl", mirrors=())

    def load():
        model = r21d_zoo.create_model("r3d_18.kinetics400_8f", pretrained=True, pretrained_cfg_overlay=overlay)
        return model.state_dict()

    first = load()
    cache = torch_home / "checkpoints" / f"r3d_d18_l8.pkl.converted-v{files.CONVERTER_VERSION}.safetensors"
    assert len(conversions) == 1 and cache.is_file()
    second = load()
    assert len(conversions) == 1  # read from the cache, not converted again
    assert all(torch.equal(first[k], second[k]) for k in first)

    data = bytearray(cache.read_bytes())
    data[-100] ^= 0xFF  # a damaged tensor byte: the checksum no longer holds
    cache.write_bytes(bytes(data))
    third = load()
    assert len(conversions) == 2 and "stale or damaged" in caplog.text
    assert all(torch.equal(first[k], third[k]) for k in first)
    assert load() and len(conversions) == 2  # the rebuilt entry is used again


def test_unreachable_sources_give_an_offline_hint(torch_home, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    overlay = dict(url="http://127.0.0.1:9/none-12345678.pth", hash_prefix="12345678", mirrors=())
    with pytest.raises(WeightsError, match=r"(?s)127.0.0.1:9.*checkpoint_path=.*HF_HUB_OFFLINE"):
        r21d_zoo.create_model("r3d_18.tv_kinetics400_16f", pretrained=True, pretrained_cfg_overlay=overlay, **TINY)


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "R21D_ZOO_OFFLINE"])
def test_offline_mode_makes_no_connection_and_fails_at_once_with_the_hint(torch_home, monkeypatch, variable):
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(variable, "1")
    with loopback_server(handler=Handler) as base:
        hashed = dict(url=f"{base}/mirror-12345678.pth", source_format="pth", hash_prefix="12345678")
        overlay = dict(url=f"{base}/r3d_d18_l8.pkl", source_format="caffe2_pkl", hash_prefix=None, mirrors=(hashed,))
        with pytest.raises(WeightsError, match=r"(?s)offline mode.*checkpoint_path="):
            r21d_zoo.create_model("r3d_18.kinetics400_8f", pretrained=True, pretrained_cfg_overlay=overlay, **TINY)
    assert requests == []  # not one request reached the server: no connection, no retry


def test_hash_checked_sources_are_tried_before_unhashed_ones():
    cfg = get_pretrained_cfg("r2plus1d_34.ig65m_32f")  # original .pkl unhashed, ig65m-pytorch .pth hashed
    order = [bool(s["hash_prefix"]) for s in cfg.download_sources()]
    assert order == sorted(order, reverse=True) and order[0] and cfg.download_sources()[0]["url"].endswith(".pth")


# --- Hugging Face Hub (offline cache) and export ----------------------------------------------------------------------


def _fake_hub_cache(cache: Path, repo_id: str, files_from: Path) -> str:
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    return sha


def test_save_pretrained_round_trip_and_offline_hub(tmp_path):
    model = r21d_zoo.create_model("r2plus1d_34.ig65m_32f", num_classes=359, **TINY).eval()
    out = Path(r21d_zoo.save_pretrained(model, str(tmp_path / "export")))
    config = json.loads((out / "config.json").read_text())
    assert {"architecture", "num_classes", "num_features", "model_args", "pretrained_cfg", "label_names"} <= set(config)
    assert config["architecture"] == "r2plus1d_34" and config["model_args"]["bn_eps"] == 1e-3
    from huggingface_hub import ModelCard

    assert ModelCard.load(out / "README.md").data.library_name == "r21d_zoo"
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        expected = model(x)
        local = r21d_zoo.create_model(f"local-dir:{out}").eval()
        assert torch.equal(local(x), expected)
        assert torch.equal(r21d_zoo.from_pretrained(str(out)).eval()(x), expected)

    cache = tmp_path / "hf"
    sha = _fake_hub_cache(cache, "acme/tiny-r2plus1d", out)
    for name in ("hf-hub:acme/tiny-r2plus1d", f"hf-hub:acme/tiny-r2plus1d@{sha}"):
        hub_model = r21d_zoo.create_model(name, cache_dir=str(cache)).eval()
        with torch.no_grad():
            assert torch.equal(hub_model(x), expected)
    assert hub_model.pretrained_cfg["hf_hub_id"] == "acme/tiny-r2plus1d"
    overlay = r21d_zoo.create_model(
        "r2plus1d_34.ig65m_32f",
        pretrained=True,
        cache_dir=str(cache),
        pretrained_cfg_overlay=dict(hf_hub_id="acme/tiny-r2plus1d"),
        **TINY,
    ).eval()
    with torch.no_grad():
        assert torch.equal(overlay(x), expected)
    with pytest.raises(WeightsError, match="(?s)hf-hub:acme/missing.*HF_HUB_OFFLINE"):
        r21d_zoo.create_model("hf-hub:acme/missing", cache_dir=str(cache))


def test_safetensors_checkpoint_and_wrong_file_for_tag(tmp_path):
    model = r21d_zoo.create_model("r2plus1d_34.ig65m_8f", **TINY)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = r21d_zoo.create_model("r2plus1d_34.ig65m_8f", pretrained=True, checkpoint_path=str(path), **TINY)
    assert torch.equal(loaded.fc.weight, model.fc.weight)
    # a tag's own source (not a user checkpoint) must have the tag's class count
    target = r21d_zoo.create_model("r2plus1d_34.ig65m_32f", **TINY)
    with pytest.raises(
        WeightsError,
        match=r"w.safetensors has a 487-class classifier but r2plus1d_34.ig65m_32f "
        r"expects 359",
    ):
        check_source_classes(read_state_dict(str(path)), get_pretrained_cfg("r2plus1d_34.ig65m_32f"), str(path))
    with pytest.raises(WeightsError, match="487 classes but the model was built with 359"):
        load_into_model(target, read_state_dict(str(path)), get_pretrained_cfg("r2plus1d_34.ig65m_32f"), str(path))


# --- preprocessing comes from the weight -----------------------------------------------------------------------------


def test_transform_matches_torchvision_preset_for_torchvision_weights():
    from torchvision.transforms._presets import VideoClassification

    model = r21d_zoo.create_model("r2plus1d_18.tv_kinetics400_16f", **TINY)
    ours = r21d_zoo.create_transform(model)
    frames = torch.randint(0, 256, (16, 240, 320, 3), dtype=torch.uint8)
    reference = VideoClassification(crop_size=(112, 112), resize_size=(128, 171))(frames.permute(0, 3, 1, 2))
    out = ours(frames)
    assert out.shape == (1, 3, 16, 112, 112)
    torch.testing.assert_close(out[0], reference, rtol=1e-5, atol=1e-5)


def test_data_config_per_family():
    csn = ClipSpec.from_model(get_pretrained_cfg("ir_csn_152.ig65m_ft_kinetics400_32f"))
    assert csn.crop_size == 224 and csn.resize_size == 256 and csn.sampling_stride == 2
    flow = ClipSpec.from_model(get_pretrained_cfg("r2plus1d_34.sports1m_ft_kinetics400_flow_32f"))
    assert len(flow.mean) == 2
    t = r21d_zoo.create_transform(get_pretrained_cfg("ir_csn_152.ig65m_32f"))
    assert t(torch.zeros(4, 300, 400, 3, dtype=torch.uint8)).shape == (1, 3, 4, 224, 224)
    with pytest.raises(ValueError, match="T, H, W, C"):
        t(torch.zeros(4, 3, 300, 400))


# --- model cards and README derive from the registry ------------------------------------------------------------------


def test_every_tag_has_an_up_to_date_card():
    cards = {p.stem for p in (ROOT / "model_cards").glob("*.md")}
    assert cards == set(r21d_zoo.list_pretrained()), "run: r21d-zoo cards"
    for name in r21d_zoo.list_pretrained():
        expected = render_model_card(registry_config(name))
        assert card_path(str(ROOT / "model_cards"), name).read_text() == expected, f"{name}: card is stale"


def test_cards_parse_as_hub_cards_with_truthful_licences_and_results():
    from huggingface_hub import ModelCard

    for name in r21d_zoo.list_pretrained():
        cfg = get_pretrained_cfg(name)
        data = ModelCard.load(card_path(str(ROOT / "model_cards"), name)).data
        assert data.library_name == "r21d_zoo" and data.pipeline_tag == "video-classification"
        assert data.license == cfg.license and data.base_model is None
        if cfg.source_format == "caffe2_pkl":  # VMZ: Apache-2.0 code, no licence stated for the weights
            assert (data.license, data.license_name) == ("other", "vmz-weights-no-licence-stated")
        published = {(m["metric"], m["value"]) for m in cfg.metrics}
        results = {(r.metric_type, r.metric_value) for r in data.eval_results or []}
        assert results == published and all(r.dataset_name == "Kinetics-400" for r in data.eval_results or [])
        assert all(cfg.metrics[i]["protocol"] in r.metric_name for i, r in enumerate(data.eval_results or []))
    for arch in r21d_zoo.list_models():
        assert get_pretrained_cfg(arch).license is None or get_pretrained_cfg(arch).has_weights  # no weights, no terms


def test_saved_model_card_loads_with_results_and_derived_card_with_base_model(tmp_path):
    from huggingface_hub import ModelCard

    model = r21d_zoo.create_model("r3d_18.kinetics400_8f", **TINY)
    model.load_state_dict(model.state_dict())  # stands in for the released weights (a model never loaded claims none)
    data = ModelCard.load(Path(r21d_zoo.save_pretrained(model, str(tmp_path / "w"))) / "README.md").data
    assert {(r.metric_type, r.metric_value) for r in data.eval_results} == {
        ("clip_top1", 49.8),
        ("video_top1", 62.3),
        ("video_top5", 83.4),
    }
    set_derived_cfg(model)  # as fine-tuning does
    data = ModelCard.load(Path(r21d_zoo.save_pretrained(model, str(tmp_path / "d"))) / "README.md").data
    assert data.base_model == "r3d_18.kinetics400_8f" and data.eval_results is None
    assert (data.license, data.license_name) == ("other", "vmz-weights-no-licence-stated")  # the base's terms stay


@pytest.mark.video
def test_a_new_head_is_a_model_of_its_own_and_label_names_survive_every_reader(tmp_path):
    """A tag with another num_classes keeps the weights' preprocessing and names them as its base, but not their
    classes, results or source; label names set the way timm documents them come back from every reader."""
    from huggingface_hub import ModelCard

    from r21d_zoo.cli import main
    from r21d_zoo.data.synthetic import make_motion_dataset
    from r21d_zoo.models import ClipSpec

    tag = "r2plus1d_18.tv_kinetics400_16f"
    source = r21d_zoo.create_model(tag, **TINY)  # stands in for the released weights
    r21d_zoo.save_pretrained(source, str(tmp_path / "src"))
    checkpoint = str(tmp_path / "src" / "model.safetensors")
    model = r21d_zoo.create_model(tag, num_classes=3, checkpoint_path=checkpoint, **TINY)
    cfg = model.pretrained_cfg
    assert (cfg["num_classes"], cfg["label_names"], cfg.get("tag"), cfg.get("url")) == (3, None, None, None)
    assert cfg["metrics"] == [] and cfg.get("hf_hub_id") is None
    assert cfg["base_model"] == tag and ClipSpec.from_model(model) == ClipSpec.from_model(source)
    assert torch.equal(model.stem[0].weight, source.stem[0].weight)
    card = ModelCard.load(Path(r21d_zoo.save_pretrained(model, str(tmp_path / "new"))) / "README.md")
    assert card.data.base_model == tag and card.data.eval_results is None and "67.463" not in card.text
    assert r21d_zoo.create_model("r2plus1d_18", num_classes=3, **TINY).pretrained_cfg["base_model"] is None  # random

    classes = ["left", "right", "up"]
    model.pretrained_cfg["label_names"] = classes  # timm's documented way
    out = Path(r21d_zoo.save_pretrained(model, str(tmp_path / "named")))
    assert json.loads((out / "config.json").read_text())["label_names"] == classes
    cache = tmp_path / "hf"
    _fake_hub_cache(cache, "acme/named", out)
    for reloaded in (
        r21d_zoo.create_model(f"local-dir:{out}"),
        r21d_zoo.create_model("hf-hub:acme/named", cache_dir=str(cache)),
    ):
        assert list(reloaded.pretrained_cfg["label_names"]) == classes and reloaded.pretrained_cfg["base_model"] == tag
    named = r21d_zoo.create_model(tag, label_names=["a", "b"], **TINY)  # the public way
    assert named.num_classes == 2 and named.pretrained_cfg["label_names"] == ("a", "b")
    with pytest.raises(ValueError, match="2 label_names for num_classes=3"):
        r21d_zoo.create_model(tag, label_names=["a", "b"], num_classes=3)

    train, _ = make_motion_dataset(tmp_path / "v", 1, 0, num_frames=8, size=32, directions=tuple(classes))
    args = ["evaluate", "--data", str(train), "--model", f"local-dir:{out}", "--output", str(tmp_path / "r.json")]
    assert main(args + ["--num-frames", "8", "--resize", "32", "32", "--crop-size", "28", "--workers", "0"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["classes"] == classes and results["videos"] == 3  # every named label maps onto the model


def test_the_docs_model_table_is_generated_from_registry():
    text = (ROOT / "docs" / "models.md").read_text()
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert table == render_model_table(), "run: r21d-zoo cards"
    for name in r21d_zoo.list_pretrained():
        assert f"`{name}`" in table


def test_push_to_hub_uploads_what_save_pretrained_writes(monkeypatch, tmp_path):
    import huggingface_hub

    calls = {}

    class FakeApi:
        def __init__(self, token=None, library_name=None, library_version=None):
            calls["library"] = library_name

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["create"] = (repo_id, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message, revision=None):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["config"] = json.loads((Path(folder_path) / "config.json").read_text())
            return "https://huggingface.co/acme/x/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = r21d_zoo.create_model("mc3_18.tv_kinetics400_16f", num_classes=3, **TINY)
    url = r21d_zoo.push_to_hub(model, "acme/x")
    assert url.endswith("/commit/abc") and calls["create"] == ("acme/x", True) and calls["library"] == "r21d_zoo"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert calls["config"]["num_classes"] == 3 and calls["config"]["label_names"] is None
