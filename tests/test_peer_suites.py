"""The peers' own model tests, run on every registered architecture through their own entry points.

Vendored, with their assertions as written, from:

- timm (huggingface/pytorch-image-models ``tests/test_models.py`` at aa4b5850c154, Apache-2.0, Copyright Ross
  Wightman): ``test_model_forward``, ``test_model_backward``, ``test_model_default_cfgs``,
  ``test_model_forward_torchscript``, ``test_model_forward_features``, ``test_model_forward_intermediates_features``,
  ``test_model_forward_intermediates``, ``test_model_forward_fx``, ``test_model_backward_fx`` and their helpers
  ``_get_input_size`` and ``_create_fx_model``; the models are made by ``timm.create_model``.
- torchvision (pytorch/vision ``test/test_models.py::test_video_model`` and its helpers ``_check_jit_scriptable``,
  ``_check_fx_compatible``, ``_check_input_backprop``, BSD-3-Clause, Copyright Soumith Chintala and the PyTorch
  contributors), on the ``*.tv_kinetics400_16f`` models.

What differs, and why:

- The input is a small clip: (C, T, 32, 32) with T from the cfg's ``input_size`` (timm caps image sizes per test the
  same way; the ``r2d`` stem's kernel spans exactly T frames); torchvision's test: 4 x 32 x 32 instead of 112.
- Video feature maps are NCTHW. Where timm takes two spatial axes from ``output_fmt`` (``NCHW``), they are
  (T, H, W) = (2, 3, 4) here, and ``pool_size`` is T x H x W; ``forward_intermediates`` is asked for
  ``output_fmt="NCTHW"`` (timm has no 3-D models whose convention could be followed instead).
- Every architecture is built at ``channel_multiplier=0.125`` (the same structure at 1/8 of the widths); the cfg
  and TorchScript tests also run one architecture per stem, block and conv type at full width (``slow``).
- torchvision compares the output with a pickle of its own model's output under seed 0 (``_assert_expected``); here
  the expectation is torchvision's model computed in this run under the same seed, which our initialisation matches.
"""

import fnmatch
import math

import pytest
import torch
import timm
from timm import set_scriptable
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models import video as tv_video
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor, get_graph_node_names

import r21d_zoo
from util import TINY

ARCHS = r21d_zoo.list_models()


# One architecture per stem, block type and conv type (the rest repeat these blocks at other depths and widths)
REPRESENTATIVES = ("r2plus1d_18", "r2plus1d_50", "r3d_18", "mc3_18", "rmc3_18", "fr2d_18", "r2d_18", "ir_csn_50")
REPRESENTATIVES += ("ip_csn_50",)


def cases(compiles: bool = False, full: bool = False) -> list:
    """Every architecture at 1/8 width; with ``full``, the :data:`REPRESENTATIVES` at full width too (slow). Tests
    that compile or trace the whole graph run the 101- and 152-layer depths only in the slow run: they add blocks of
    the types the shallower ones already cover."""
    out = []
    for arch in ARCHS:
        deep = compiles and arch.endswith(("_101", "_152"))
        out.append(pytest.param(arch, TINY, id=f"{arch}-tiny", marks=[pytest.mark.slow] if deep else []))
        if full and arch in REPRESENTATIVES:
            out.append(pytest.param(arch, {}, id=f"{arch}-full", marks=[pytest.mark.slow]))
    return out


SPATIAL = 32
OUTPUT_FMT = "NCTHW"
SPATIAL_AXES = (2, 3, 4)  # T, H, W of an NCTHW map
FEAT_AXIS = 1
torch_device = "cpu"


def create_model(model_name, width, **kwargs):
    return timm.create_model(model_name, **width, **kwargs)


def _get_input_size(model=None, model_name="", target=None):
    cfg = model.default_cfg if model is not None else timm.get_pretrained_cfg(model_name).to_dict()
    c, t, h, w = cfg["input_size"]
    return (c, t, min(h, SPATIAL), min(w, SPATIAL))


# --- timm ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name, width", cases())
def test_model_forward(model_name, width, batch_size=1):
    """Run a single forward pass with each model"""
    model = create_model(model_name, width, pretrained=False)
    model.eval()

    input_size = _get_input_size(model=model)
    inputs = torch.randn((batch_size, *input_size))
    inputs = inputs.to(torch_device)
    model.to(torch_device)
    outputs = model(inputs)

    assert outputs.shape[0] == batch_size
    assert not torch.isnan(outputs).any(), "Output included NaNs"

    # Test that grad-checkpointing, if supported, doesn't cause model failures or change in output
    try:
        model.set_grad_checkpointing()
    except Exception:
        # throws if not supported, that's fine
        pass
    else:
        outputs2 = model(inputs)
        if isinstance(outputs, tuple):
            outputs2 = torch.cat(outputs2)
        assert torch.allclose(outputs, outputs2, rtol=1e-4, atol=1e-5), "Output does not match"


@pytest.mark.parametrize("model_name, width", cases())
def test_model_backward(model_name, width, batch_size=2):
    """Run a single forward pass with each model"""
    input_size = _get_input_size(model_name=model_name)

    model = create_model(model_name, width, pretrained=False, num_classes=42)
    encoder_only = model.num_classes == 0  # FIXME better approach?
    num_params = sum([x.numel() for x in model.parameters()])
    model.train()

    inputs = torch.randn((batch_size, *input_size))
    inputs = inputs.to(torch_device)
    model.to(torch_device)
    outputs = model(inputs)
    if isinstance(outputs, tuple):
        outputs = torch.cat(outputs)
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum([x.grad.numel() for x in model.parameters() if x.grad is not None])

    if encoder_only:
        assert outputs.shape[FEAT_AXIS] == model.num_features
    else:
        assert outputs.shape[-1] == 42
    assert num_params == num_grad, "Some parameters are missing gradients"
    assert not torch.isnan(outputs).any(), "Output included NaNs"


@pytest.mark.parametrize("model_name, width", cases(full=True))
def test_model_default_cfgs(model_name, width, batch_size=1):
    """Run a single forward pass with each model"""
    model = create_model(model_name, width, pretrained=False)
    model.eval()
    model.to(torch_device)
    assert getattr(model, "num_classes") >= 0
    assert getattr(model, "num_features") > 0
    assert getattr(model, "head_hidden_size") > 0
    state_dict = model.state_dict()
    cfg = model.default_cfg

    input_size = _get_input_size(model=model)
    pool_size = model.pool_size(input_size[1:])  # the cfg's pool_size is for its own input_size (checked below)
    assert cfg["pool_size"] == model.pool_size(cfg["input_size"][1:])
    spatial_axis = SPATIAL_AXES
    feat_axis = FEAT_AXIS

    input_tensor = torch.randn((batch_size, *input_size), device=torch_device)

    # test forward_features (always unpooled) & forward_head w/ pre_logits
    outputs = model.forward_features(input_tensor)
    outputs_pre = model.forward_head(outputs, pre_logits=True)
    assert tuple(outputs.shape[a] for a in spatial_axis) == pool_size, f"unpooled feature shape {outputs.shape}"
    assert outputs.shape[feat_axis] == model.num_features
    assert outputs_pre.shape[1] == model.head_hidden_size

    # test forward after deleting the classifier, output should be poooled, size(-1) == model.num_features
    model.reset_classifier(0)
    assert model.num_classes == 0
    model.to(torch_device)
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 2
    assert outputs.shape[1] == model.head_hidden_size
    assert outputs.shape == outputs_pre.shape

    # test model forward after removing pooling and classifier
    model.reset_classifier(0, "")  # reset classifier and disable global pooling
    model.to(torch_device)
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 5  # timm: 4 (NCHW)
    assert tuple(outputs.shape[a] for a in spatial_axis) == pool_size

    # test classifier + global pool deletion via __init__
    model = create_model(model_name, width, pretrained=False, num_classes=0, global_pool="").eval()
    model.to(torch_device)
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 5
    assert tuple(outputs.shape[a] for a in spatial_axis) == pool_size

    # check classifier name matches default_cfg
    if cfg.get("num_classes", None):
        classifier = cfg["classifier"]
        if not isinstance(classifier, (tuple, list)):
            classifier = (classifier,)
        for c in classifier:
            assert c + ".weight" in state_dict.keys(), f"{c} not in model params"

    # check first conv(s) names match default_cfg
    first_conv = cfg["first_conv"]
    if isinstance(first_conv, str):
        first_conv = (first_conv,)
    assert isinstance(first_conv, (tuple, list))
    for fc in first_conv:
        assert fc + ".weight" in state_dict.keys(), f"{fc} not in model params"


@pytest.mark.parametrize("model_name, width", cases(compiles=True, full=True))
def test_model_forward_torchscript(model_name, width, batch_size=1):
    """Run a single forward pass with each model"""
    input_size = _get_input_size(model_name=model_name)

    with set_scriptable(True):
        model = create_model(model_name, width, pretrained=False)
    model.eval()
    inputs = torch.randn((batch_size, *input_size))
    eager = model(inputs)

    model = torch.jit.script(model)
    model.to(torch_device)
    outputs = model(inputs)

    assert outputs.shape[0] == batch_size
    assert not torch.isnan(outputs).any(), "Output included NaNs"
    assert torch.allclose(outputs, eager, rtol=1e-5, atol=1e-6)  # not in timm's test: the "equal to eager"


@pytest.mark.parametrize("model_name, width", cases())
@pytest.mark.parametrize("feature_cls", [None, "getter"])  # timm's test_model_forward_(intermediates_)features
def test_model_forward_features(model_name, width, feature_cls, batch_size=1):
    """Run a single forward pass with each model in feature extraction mode"""
    extra = {} if feature_cls is None else dict(feature_cls=feature_cls)
    model = create_model(model_name, width, pretrained=False, features_only=True, **extra)
    model.eval()
    expected_channels = model.feature_info.channels()
    expected_reduction = model.feature_info.reduction()
    assert len(expected_channels) >= 3  # all models here should have at least 3 default feat levels

    input_size = _get_input_size(model=model)
    feat_axis = FEAT_AXIS
    spatial_axis = SPATIAL_AXES[1:]  # timm checks the spatial reduction; T x H x W: H, W

    outputs = model(torch.randn((batch_size, *input_size)))
    assert len(expected_channels) == len(outputs)
    spatial_size = input_size[-2:]
    for e, r, o in zip(expected_channels, expected_reduction, outputs):
        assert e == o.shape[feat_axis]
        assert o.shape[spatial_axis[0]] <= math.ceil(spatial_size[0] / r) + 1
        assert o.shape[spatial_axis[1]] <= math.ceil(spatial_size[1] / r) + 1
        assert o.shape[0] == batch_size
        assert not torch.isnan(o).any()


@pytest.mark.parametrize("model_name, width", cases())
def test_model_forward_intermediates(model_name, width, batch_size=1):
    """Run a single forward pass with each model in feature extraction mode"""
    model = create_model(model_name, width, pretrained=False)
    model.eval()
    feature_info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    expected_channels = feature_info.channels()
    expected_reduction = feature_info.reduction()
    assert len(expected_channels) >= 3  # all models here should have at least 3 feature levels

    input_size = _get_input_size(model=model)
    output_fmt = OUTPUT_FMT  # timm: 'NCHW'
    feat_axis = FEAT_AXIS
    spatial_axis = SPATIAL_AXES[1:]

    inpt = torch.randn((batch_size, *input_size))
    output, intermediates = model.forward_intermediates(
        inpt,
        output_fmt=output_fmt,
    )
    assert len(expected_channels) == len(intermediates)
    spatial_size = input_size[-2:]
    for e, r, o in zip(expected_channels, expected_reduction, intermediates):
        assert e == o.shape[feat_axis]
        assert o.shape[spatial_axis[0]] <= math.ceil(spatial_size[0] / r) + 1
        assert o.shape[spatial_axis[1]] <= math.ceil(spatial_size[1] / r) + 1
        assert o.shape[0] == batch_size
        assert not torch.isnan(o).any()

    output2 = model.forward_features(inpt)
    assert torch.allclose(output, output2)

    # Test that grad-checkpointing, if supported
    try:
        model.set_grad_checkpointing()
    except Exception:
        # throws if not supported, that's fine
        pass
    else:
        output3, _ = model.forward_intermediates(
            inpt,
            output_fmt=output_fmt,
        )
        assert torch.allclose(output, output3, rtol=1e-4, atol=1e-5), "Output does not match"


def _create_fx_model(model, train=False):
    # This block of code does a bit of juggling to handle any case where there are multiple outputs in train mode
    # So we trace once and look at the graph, and get the indices of the nodes that lead into the original fx output
    # node. Then we use those indices to select from train_nodes returned by torchvision get_graph_node_names
    tracer_kwargs = dict(
        leaf_modules=get_notrace_modules(),
        autowrap_functions=get_notrace_functions(),
        param_shapes_constant=True,
    )
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)

    eval_return_nodes = [eval_nodes[-1]]
    train_return_nodes = [train_nodes[-1]]
    if train:
        tracer = NodePathTracer(**tracer_kwargs)
        graph = tracer.trace(model)
        graph_nodes = list(reversed(graph.nodes))
        output_node_names = [n.name for n in graph_nodes[0]._input_nodes.keys()]
        graph_node_names = [n.name for n in graph_nodes]
        output_node_indices = [-graph_node_names.index(node_name) for node_name in output_node_names]
        train_return_nodes = [train_nodes[ix] for ix in output_node_indices]

    fx_model = create_feature_extractor(
        model,
        train_return_nodes=train_return_nodes,
        eval_return_nodes=eval_return_nodes,
        tracer_kwargs=tracer_kwargs,
    )
    return fx_model


@pytest.mark.parametrize("model_name, width", cases(compiles=True))
def test_model_forward_fx(model_name, width, batch_size=1):
    """
    Symbolically trace each model and run single forward pass through the resulting GraphModule
    Also check that the output of a forward pass through the GraphModule is the same as that from the original Module
    """
    model = create_model(model_name, width, pretrained=False)
    model.eval()

    input_size = _get_input_size(model=model)
    with torch.inference_mode():
        inputs = torch.randn((batch_size, *input_size))
        outputs = model(inputs)
        if isinstance(outputs, tuple):
            outputs = torch.cat(outputs)

        model = _create_fx_model(model)
        fx_outputs = tuple(model(inputs).values())
        if isinstance(fx_outputs, tuple):
            fx_outputs = torch.cat(fx_outputs)

    assert torch.all(fx_outputs == outputs)
    assert outputs.shape[0] == batch_size
    assert not torch.isnan(outputs).any(), "Output included NaNs"


@pytest.mark.parametrize("model_name, width", cases(compiles=True))
def test_model_backward_fx(model_name, width, batch_size=2):
    """Symbolically trace each model and run single backward pass through the resulting GraphModule"""
    input_size = _get_input_size(model_name=model_name)

    model = create_model(model_name, width, pretrained=False, num_classes=42)
    model.train()
    num_params = sum([x.numel() for x in model.parameters()])

    model = _create_fx_model(model, train=True)
    outputs = tuple(model(torch.randn((batch_size, *input_size))).values())
    if isinstance(outputs, tuple):
        outputs = torch.cat(outputs)
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum([x.grad.numel() for x in model.parameters() if x.grad is not None])

    assert outputs.shape[-1] == 42
    assert num_params == num_grad, "Some parameters are missing gradients"
    assert not torch.isnan(outputs).any(), "Output included NaNs"


def test_an_unsupported_feature_cls_names_the_supported_ones():
    with pytest.raises(ValueError, match="feature_cls='fx' is not supported; use one of list, hook, dict, getter"):
        r21d_zoo.create_model("r2plus1d_18", features_only=True, feature_cls="fx", **TINY)


def test_the_registry_has_no_architecture_the_suites_skip():
    assert ARCHS and not [a for a in ARCHS if fnmatch.fnmatch(a, "*_7b_*")]  # timm's only exclusion that could apply


# --- torchvision ----------------------------------------------------------------------------------------------------


def _check_jit_scriptable(nn_module, args, unwrapper=None, eager_out=None):
    """Check that a nn.Module's results in TorchScript match eager and that it can be exported"""

    def get_export_import_copy(m):
        """Save and load a TorchScript model"""
        import io

        buffer = io.BytesIO()
        torch.jit.save(m, buffer)
        buffer.seek(0)
        return torch.jit.load(buffer)

    sm = torch.jit.script(nn_module)
    sm.eval()

    if eager_out is None:
        with torch.no_grad(), torch.random.fork_rng():
            eager_out = nn_module(*args)

    with torch.no_grad(), torch.random.fork_rng():
        script_out = sm(*args)
        if unwrapper:
            script_out = unwrapper(script_out)

    torch.testing.assert_close(eager_out, script_out, atol=1e-4, rtol=1e-4)

    m_import = get_export_import_copy(sm)
    with torch.no_grad(), torch.random.fork_rng():
        imported_script_out = m_import(*args)
        if unwrapper:
            imported_script_out = unwrapper(imported_script_out)

    torch.testing.assert_close(script_out, imported_script_out, atol=3e-4, rtol=3e-4)


def _check_fx_compatible(model, inputs, eager_out=None):
    model_fx = torch.fx.symbolic_trace(model)
    if eager_out is None:
        eager_out = model(inputs)
    with torch.no_grad(), torch.random.fork_rng():
        fx_out = model_fx(inputs)
    torch.testing.assert_close(eager_out, fx_out)


def _check_input_backprop(model, inputs):
    if isinstance(inputs, list):
        requires_grad = list()
        for inp in inputs:
            requires_grad.append(inp.requires_grad)
            inp.requires_grad_(True)
    else:
        requires_grad = inputs.requires_grad
        inputs.requires_grad_(True)

    out = model(inputs)

    if isinstance(out, dict):
        out["out"].sum().backward()
    else:
        if isinstance(out, (list, tuple)):
            out[0].sum().backward()
        else:
            out.sum().backward()

    if isinstance(inputs, list):
        for i, inp in enumerate(inputs):
            assert inputs[i].grad is not None
            inp.requires_grad_(requires_grad[i])
    else:
        assert inputs.grad is not None
        inputs.requires_grad_(requires_grad)


def set_rng_seed(seed):
    torch.manual_seed(seed)


TV_TAGS = [name for name in r21d_zoo.list_pretrained() if name.endswith(".tv_kinetics400_16f")]


@pytest.mark.parametrize("model_name", TV_TAGS)
def test_video_model(model_name, dev="cpu"):
    set_rng_seed(0)
    # the default input shape is
    # bs * num_channels * clip_len * h *w
    defaults = {
        "input_shape": (1, 3, 4, 32, 32),  # torchvision: 112 x 112
        "num_classes": 50,
    }
    kwargs = dict(defaults)
    num_classes = kwargs.get("num_classes")
    input_shape = kwargs.pop("input_shape")
    # test both basicblock and Bottleneck
    model = r21d_zoo.create_model(model_name, pretrained=False, **kwargs)
    model.eval().to(device=dev)
    # RNG always on CPU, to ensure x in cuda tests is bitwise identical to x in cpu tests
    x = torch.rand(input_shape).to(device=dev)
    out = model(x)
    set_rng_seed(0)  # torchvision's expected output: its own model under the same seed (here, not from a pickle)
    expected = getattr(tv_video, model_name.split(".")[0])(**kwargs).eval()(torch.rand(input_shape))
    torch.testing.assert_close(out, expected, rtol=0, atol=0.1)  # _assert_expected(out, model_name, prec=0.1)
    assert out.shape[-1] == num_classes
    _check_jit_scriptable(model, (x,), eager_out=out)
    _check_fx_compatible(model, x, eager_out=out)
    assert out.shape[-1] == num_classes

    _check_input_backprop(model, x)


# --- the conventions these suites rely on -------------------------------------------------------------------------


def test_default_cfg_is_pretrained_cfg_and_its_pool_size_follows_the_clip():
    model = r21d_zoo.create_model("r2plus1d_18", **TINY)
    assert model.default_cfg is model.pretrained_cfg and model.default_cfg["pool_size"] == (2, 7, 7)  # 16 x 112
    model.pretrained_cfg = dict(model.pretrained_cfg, input_size=(3, 8, 64, 64))
    assert model.default_cfg["pool_size"] == (1, 4, 4)
    for cls in ("list", "getter"):
        features = r21d_zoo.create_model("r2plus1d_18", features_only=True, feature_cls=cls, **TINY)
        assert features.default_cfg is features.pretrained_cfg and features.default_cfg["architecture"] == "r2plus1d_18"


def test_every_feature_cls_returns_the_same_maps():
    x = torch.randn(1, 3, 8, 32, 32)
    maps = {}
    for cls in ("list", "hook", "dict", "getter"):
        torch.manual_seed(0)
        model = r21d_zoo.create_model("r3d_18", features_only=True, feature_cls=cls, out_indices=(1, 3), **TINY)
        out = model.eval()(x)
        maps[cls] = list(out.values()) if cls == "dict" else out
        if cls == "dict":
            assert list(out) == ["layer1", "layer3"]
        if cls == "getter":
            assert all(k.startswith("model.") for k in model.state_dict())  # as timm's FeatureGetterNet
    for cls in ("hook", "dict", "getter"):
        assert all(torch.equal(a, b) for a, b in zip(maps["list"], maps[cls])), cls


def test_config_json_names_the_classes_the_hub_way_too(tmp_path):
    import json

    model = r21d_zoo.create_model("r2plus1d_18", label_names=["jump", "run"], **TINY)
    r21d_zoo.save_pretrained(model, str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["id2label"] == {"0": "jump", "1": "run"} and config["label2id"] == {"jump": 0, "run": 1}
    del config["label_names"]  # a config that names its classes only the Hub's way
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert r21d_zoo.create_model(f"local-dir:{tmp_path}").pretrained_cfg["label_names"] == ("jump", "run")
    config["label_names"] = ["jump", "walk"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    disagree = "label_names and id2label disagree at class 1 \\('walk' vs 'run'\\)"
    with pytest.raises(r21d_zoo.WeightsError, match=disagree):
        r21d_zoo.create_model(f"local-dir:{tmp_path}")
