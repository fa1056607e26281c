"""Inflate a 2D ImageNet ResNet (timm or torchvision, or their state dict) into a video ResNet (I3D-style).

Every 2D ``k x k`` filter becomes a ``kt x k x k`` filter: ``repeat`` copies it over time and divides by ``kt`` (a
clip of one repeated image then gives the 2D activations at every temporally interior position), ``center`` puts it
on the centre time slice (zeros elsewhere). BatchNorm statistics and affine parameters are carried over, the 2D
max-pool after the stem becomes ``pool1``, and strides follow R3D (layers 2-4 also stride 2 in time, except for
fR2D/R2D/MC3's 2D layers). The video model is the registered ``<family>_<depth>`` architecture, built through the
registry, so ``save_pretrained`` and ``create_model("local-dir:...")`` round-trip it; its cfg is derived (no source,
no metrics) with ``base_model`` naming the 2D model.

Families: ``r3d`` (3x3x3 everywhere), ``mc3`` (3D stem and layer1, 2D above), ``fr2d`` (per-frame 2D), ``r2d``
(the stem spans the whole clip) and ``r2plus1d``. For ``r2plus1d`` the spatial conv takes the 2D filter (into the
first output-width channels of its inner width, the rest zero), its BN takes the 2D BN, and the temporal conv and
the BN after it start as the identity. That is an initialisation, not the same function: a (2+1)D conv has a ReLU
between its halves, which the 2D network does not have after its second conv of a block.
"""

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..models import ClipSpec, VideoResNet, create_model, get_pretrained_cfg, is_model, list_models

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FAMILIES: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "r3d": (("3d",) * 4, "3d"),
    "mc3": (("3d", "2d", "2d", "2d"), "3d"),
    "fr2d": (("2d",) * 4, "2d"),
    "r2d": (("2d",) * 4, "r2d"),
    "r2plus1d": (("2plus1d",) * 4, "r2plus1d"),
}
MODES = ("repeat", "center")
DEPTHS = {
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
}
_BLOCK_KEY = re.compile(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)$")
_INCOMPATIBLE_HINT = (
    "only plain torchvision-style ResNets inflate (7x7 stem, basic or bottleneck blocks of width 64, conv+BN "
    "shortcuts): e.g. timm 'resnet18', 'resnet50.a1_in1k', or torchvision resnet18..resnet152"
)


class InflationError(ValueError):
    """The 2D model cannot be inflated into the requested video architecture."""


@dataclass
class InflationReport:
    unused_2d: List[str] = field(default_factory=list)  # 2D keys not used (only fc when num_classes differs)
    synthesized: List[str] = field(default_factory=list)  # video keys with no 2D counterpart ((2+1)D temporal halves)
    reinitialized: List[str] = field(default_factory=list)  # video keys left at their random init (a new fc)


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


def _inflate_conv(w2d: torch.Tensor, shape: torch.Size, mode: str, key: str) -> torch.Tensor:
    o, i, kt, kh, kw = shape
    if tuple(w2d.shape) != (o, i, kh, kw):
        raise InflationError(
            f"{key}: the 2D filter is {tuple(w2d.shape)} but the video model needs {(o, i, kh, kw)} per time step; "
            + _INCOMPATIBLE_HINT
        )
    if mode == "repeat":
        return w2d.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
    out = torch.zeros(shape, dtype=w2d.dtype)
    out[:, :, kt // 2] = w2d
    return out


def _identity_bn(target: Dict[str, torch.Tensor], prefix: str, eps: float) -> Dict[str, torch.Tensor]:
    n = target[f"{prefix}.weight"].shape[0]
    return {
        f"{prefix}.weight": torch.ones(n),
        f"{prefix}.bias": torch.zeros(n),
        f"{prefix}.running_mean": torch.zeros(n),
        f"{prefix}.running_var": torch.full((n,), 1.0 - eps),  # (x - 0) / sqrt(1 - eps + eps) = x
        f"{prefix}.num_batches_tracked": torch.zeros((), dtype=torch.long),
    }


def _padded_bn(bn2d: Dict[str, torch.Tensor], n: int) -> Dict[str, torch.Tensor]:
    """The 2D BN on the first channels; the extra channels output exactly zero (weight 0, bias 0)."""
    out = {}
    for name, value in bn2d.items():
        if value.dim() == 0:
            out[name] = value
            continue
        fill = 1.0 if name == "running_var" else 0.0
        padded = torch.full((n,), fill, dtype=value.dtype)
        padded[: value.shape[0]] = value
        out[name] = padded
    return out


def _two_plus_one(
    w2d: torch.Tensor,
    bn2d: Dict[str, torch.Tensor],
    target: Dict[str, torch.Tensor],
    conv: str,
    outer_bn: str,
    mode: str,
    eps: float,
) -> Dict[str, torch.Tensor]:
    """A (2+1)D conv (``conv``.0 spatial, .1 BN, .3 temporal) + ``outer_bn`` from one 2D conv + BN."""
    spatial, temporal = target[f"{conv}.0.weight"], target[f"{conv}.3.weight"]
    mid, o = spatial.shape[0], w2d.shape[0]
    if mid < o:
        raise InflationError(f"{conv}: inner width {mid} < output width {o}; the temporal conv cannot be the identity")
    s = torch.zeros_like(spatial)
    s[:o, :, 0] = _inflate_conv(w2d, torch.Size((o, *spatial.shape[1:])), "repeat", conv)[:, :, 0]
    kt = temporal.shape[2]
    t = torch.zeros_like(temporal)
    eye = torch.eye(o, mid, dtype=t.dtype)
    if mode == "repeat":
        t[:, :, :, 0, 0] = (eye / kt).unsqueeze(-1).expand(o, mid, kt)
    else:
        t[:, :, kt // 2, 0, 0] = eye
    out = {f"{conv}.0.weight": s, f"{conv}.3.weight": t}
    out.update({f"{conv}.1.{k}": v for k, v in _padded_bn(bn2d, mid).items()})
    out.update(_identity_bn(target, outer_bn, eps))
    return out


def inflate_state_dict(
    sd2d: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor], mode: str = "repeat", bn_eps: float = 1e-5
) -> Tuple[Dict[str, torch.Tensor], InflationReport]:
    """Map a torchvision/timm 2D ResNet state dict onto a VideoResNet state dict ``target`` (shapes and keys)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out: Dict[str, torch.Tensor] = {}
    used = set()
    report = InflationReport()

    def bn_of(prefix2d: str) -> Dict[str, torch.Tensor]:
        names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        found = {n: sd2d[f"{prefix2d}.{n}"] for n in names if f"{prefix2d}.{n}" in sd2d}
        used.update(f"{prefix2d}.{n}" for n in found)
        return found

    def conv_pair(conv2d: str, bn2d: str, conv3d: str, bn3d: str) -> None:
        w2d = sd2d[f"{conv2d}.weight"]
        used.add(f"{conv2d}.weight")
        bn = bn_of(bn2d)
        if f"{conv3d}.3.weight" in target:  # a (2+1)D conv
            out.update(_two_plus_one(w2d, bn, target, conv3d, bn3d, mode, bn_eps))
            report.synthesized += [f"{conv3d}.3.weight"] + [k for k in target if k.startswith(f"{bn3d}.")]
            return
        key = f"{conv3d}.weight"
        out[key] = _inflate_conv(w2d, target[key].shape, mode, key)
        out.update({f"{bn3d}.{k}": v for k, v in bn.items()})

    if "stem.3.weight" in target:  # (2+1)D stem: spatial stem.0, BN stem.1, temporal stem.3, BN stem.4
        conv_pair("conv1", "bn1", "stem", "stem.4")
    else:
        conv_pair("conv1", "bn1", "stem.0", "stem.1")
    for key in sd2d:  # block convs; in (2+1)D blocks conv{n}.0 is the factorised conv and conv{n}.1 the outer BN
        m = _BLOCK_KEY.match(key)
        if m and m.group(3) == "conv" and m.group(5) == "weight":
            base = f"layer{m.group(1)}.{m.group(2)}"
            n = m.group(4)
            conv_pair(f"{base}.conv{n}", f"{base}.bn{n}", f"{base}.conv{n}.0", f"{base}.conv{n}.1")
    for key in sd2d:
        if ".downsample.0.weight" in key:
            base = key[: -len(".0.weight")]
            conv_pair(f"{base}.0", f"{base}.1", f"{base}.0", f"{base}.1")
    if "fc.weight" in target and "fc.weight" in sd2d and target["fc.weight"].shape == sd2d["fc.weight"].shape:
        out["fc.weight"], out["fc.bias"] = sd2d["fc.weight"], sd2d["fc.bias"]
        used.update(("fc.weight", "fc.bias"))
    report.unused_2d = sorted(set(sd2d) - used)
    report.reinitialized = sorted(set(target) - set(out))
    missing_shape = [k for k, v in out.items() if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if missing_shape:
        raise InflationError(f"shape mismatch after inflation for {missing_shape[:5]}; " + _INCOMPATIBLE_HINT)
    return out, report


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
