"""Inflate a 2D ImageNet ResNet (timm or torchvision, or their state dict) into a registered video ResNet, built
through the registry so ``save_pretrained`` and ``create_model("local-dir:...")`` round-trip it (the mapping of the
weights is :func:`~r21d_zoo.models._surgery.inflate_state_dict`)."""

from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from ._factory import create_model
from ._pretrained import ClipSpec
from ._registry import get_pretrained_cfg, is_model, list_models
from ._surgery import _BLOCK_KEY, _INCOMPATIBLE_HINT, DEPTHS, FAMILIES, IMAGENET_MEAN, IMAGENET_STD, InflationError
from ._surgery import inflate_state_dict
from .video_resnet import VideoResNet


def _source_state_dict(source: Union[str, nn.Module, Dict[str, torch.Tensor]], pretrained: bool):
    """State dict, data config (with the weights' ``license`` for timm) and name of a timm name, a timm/torchvision
    ResNet module, or a state dict."""
    if isinstance(source, str):
        import timm

        source = timm.create_model(source, pretrained=pretrained)
    if isinstance(source, nn.Module):
        cfg = getattr(source, "pretrained_cfg", None)
        if cfg is not None:  # timm: its Hub repo id names the weights
            import timm.data

            name = cfg.get("hf_hub_id") or ".".join(x for x in (cfg.get("architecture"), cfg.get("tag")) if x)
            data = dict(timm.data.resolve_data_config({}, model=source), license=cfg.get("license"))
            return source.state_dict(), data, name
        return source.state_dict(), {}, f"{type(source).__module__.split('.')[0]} {type(source).__name__}"
    if isinstance(source, dict):
        return dict(source), {}, "ResNet state dict"
    raise TypeError(f"expected a timm model name, a 2D ResNet module or a state dict, got {type(source).__name__}")


def _structure(sd: Dict[str, torch.Tensor]) -> Tuple[str, Tuple[int, ...], int]:
    if "conv1.weight" not in sd or sd["conv1.weight"].dim() != 4:
        deep = any(k.startswith("conv1.0.") for k in sd)
        raise InflationError(
            f"no 7x7 stem 'conv1.weight' in the 2D state dict{' (a deep stem, e.g. resnet*d)' if deep else ''}; "
            + _INCOMPATIBLE_HINT
        )
    bad = sorted({k.split(".")[2] for k in sd if k.startswith("layer") and not _BLOCK_KEY.match(k)} - {"downsample"})
    if bad:
        raise InflationError(f"the 2D blocks have modules {bad} with no video counterpart; " + _INCOMPATIBLE_HINT)
    layers = tuple(
        1 + max((int(k.split(".")[1]) for k in sd if k.startswith(f"layer{i}.")), default=-1) for i in range(1, 5)
    )
    if 0 in layers:
        raise InflationError(f"expected layer1..layer4 in the 2D state dict, found block counts {layers}")
    block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
    num_classes = sd["fc.weight"].shape[0] if "fc.weight" in sd else 0
    return block, layers, num_classes



def inflate(
    source: Union[str, nn.Module, Dict[str, torch.Tensor]],
    family: str = "r3d",
    mode: str = "repeat",
    num_classes: Optional[int] = None,
    pretrained: bool = False,
    num_frames: int = 16,
    **model_args: Any,
) -> VideoResNet:
    """A video ResNet (the registered ``<family>_<depth>``) initialised from a 2D ResNet.

    Args:
        source: a timm model name (``"resnet50.a1_in1k"``; downloaded with ``pretrained=True``), a timm or
            torchvision ResNet, or a state dict in their key naming.
        family: ``r3d``, ``mc3``, ``fr2d``, ``r2d`` or ``r2plus1d``; the depth and block type follow the 2D model.
        mode: ``repeat`` (divide by the temporal kernel size) or ``center``.
        num_classes: ``None`` keeps the 2D classifier (e.g. 1000 ImageNet classes); another value gets a new head.
        num_frames: clip length (R2D's stem kernel; recorded in the config).
        model_args: further ``create_model`` arguments (e.g. ``drop_rate``).
    The model's ``inflation_report`` lists unused 2D keys (none, apart from ``fc`` when the head is replaced) and the
    keys that have no 2D counterpart.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    sd2d, data, source_name = _source_state_dict(source, pretrained)
    block, layers, classes_2d = _structure(sd2d)
    depth = DEPTHS.get((block, layers))
    arch = f"{family}_{depth}"
    if depth is None or not is_model(arch):
        raise InflationError(
            f"no registered {family} architecture for a {block}-block ResNet with layers {layers}; registered: "
            f"{', '.join(list_models(f'{family}_*'))}. " + _INCOMPATIBLE_HINT
        )
    if not isinstance(source, str) and not hasattr(source, "pretrained_cfg"):
        source_name = f"{source_name}-{depth}"  # e.g. "torchvision ResNet-50"
    width = sd2d["conv1.weight"].shape[0]
    weight_args = dict(bn_eps=1e-5, pool1=True, stem_mid=width)
    if family == "r2d":
        weight_args["num_frames"] = num_frames  # the stem's temporal kernel
    args = dict(
        weight_args,
        num_classes=classes_2d if num_classes is None else num_classes,
        in_chans=sd2d["conv1.weight"].shape[1],
        **model_args,
    )
    model = create_model(arch, **args)
    state, report = inflate_state_dict(sd2d, model.state_dict(), mode, model._model_args["bn_eps"])
    full = model.state_dict()
    full.update(state)
    model.load_state_dict(full, strict=True)
    model.inflation_report = report
    size = int(data.get("input_size", (3, 224, 224))[-1])
    clip = ClipSpec(
        num_frames=num_frames,
        resize_size=int(round(size / data.get("crop_pct", 0.875))),
        crop_size=size,
        mean=tuple(data.get("mean", IMAGENET_MEAN)),
        std=tuple(data.get("std", IMAGENET_STD)),
    )
    model.pretrained_cfg = (
        get_pretrained_cfg(arch)
        .derive(
            base_model=source_name,
            clip=clip,
            in_chans=args["in_chans"],
            num_classes=args["num_classes"],
            model_args=weight_args,
            license=data.get("license"),  # the 2D weights' terms (timm records them), else none known
            license_name=None,
            license_link=None,
            notes=f"{family} {mode}-inflated (I3D-style) from the 2D ResNet {source_name}.",
        )
        .to_dict()
    )
    return model
