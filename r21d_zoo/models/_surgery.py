"""Weight surgery: state dicts mapped onto other shapes of network. :func:`adapt_input_conv` gives an RGB stem
another number of input channels (timm's rule); :func:`inflate_state_dict` maps a 2D ImageNet ResNet onto a video
ResNet (I3D-style; :func:`r21d_zoo.models.inflate` builds the model around it).

Inflate a 2D ImageNet ResNet (timm or torchvision, or their state dict) into a video ResNet (I3D-style).

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
from typing import Dict, List, Tuple

import torch

from ._files import WeightsError


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


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """Adapt an RGB first-conv weight (O, 3, kT, kH, kW) to ``in_chans`` inputs, as timm does for 2D stems.

    1 channel: sum over RGB. Otherwise the RGB filters are tiled and rescaled by 3 / in_chans, so a constant input
    gives the same activation.
    """
    dtype = weight.dtype
    weight = weight.float()
    o, i = weight.shape[:2]
    if i != 3:
        raise WeightsError(f"can only adapt a 3-channel first conv, this one has {i} input channels")
    if in_chans == 1:
        weight = weight.sum(dim=1, keepdim=True)
    else:
        repeat = -(-in_chans // 3)
        weight = weight.repeat(1, repeat, *([1] * (weight.dim() - 2)))[:, :in_chans] * (3 / in_chans)
    return weight.to(dtype)
