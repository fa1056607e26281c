"""Test-only: synthetic caffe2 blob dicts written from the naming grammar, and a forward pass computed directly over
the blobs with caffe2 semantics (conv, SpatialBN eps 1e-3 in test mode, ReLU, sum, average pool, FC).

Deliberately independent of ``r21d_zoo.models`` and ``conversion/``: it re-derives topology from the VMZ
``create_r3d`` rules (reference file sections b and c), so a mapping bug cannot cancel itself out.
"""

from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

LAYERS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
EPS = 1e-3


def _mid(cin: int, cout: int) -> int:
    return cin * cout * 27 // (cin * 9 + cout * 3)


def _layer_kind(family: str, layer: int) -> str:
    """'2.5d', '3d', '2d', 'ir', 'ip' for layer 0..3. Mixed convolutions (VMZ ``create_mcx``): MCx is 3D up to
    level x (conv1 is level 2, layer1 level 3, ...), 2D after; rMCx has a 2D conv1 and is 3D from level x on."""
    if family.startswith("rmc"):
        return "3d" if layer + 3 >= int(family[3:]) + 1 else "2d"
    if family.startswith("mc"):
        return "3d" if layer + 3 <= int(family[2:]) else "2d"
    return {
        "r2plus1d": "2.5d",
        "r3d": "3d",
        "fr2d": "2d",
        "r2d": "2d",
        "ir_csn": "ir",
        "ip_csn": "ip",
    }[family]


def synth_blobs(
    family: str, depth: int, num_classes: int, frames: int = 8, seed: int = 0, prefix: str = ""
) -> Dict[str, np.ndarray]:
    """Random float32 blobs with exactly the names and shapes of a VMZ caffe2 checkpoint."""
    rng = np.random.default_rng(seed)
    blobs: Dict[str, np.ndarray] = {}

    def w(name: str, shape: List[int]) -> None:
        fan_in = int(np.prod(shape[1:]))
        blobs[prefix + name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bn(name: str, c: int) -> None:
        blobs[prefix + name + "_s"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        blobs[prefix + name + "_b"] = rng.normal(0, 0.1, c).astype(np.float32)
        blobs[prefix + name + "_rm"] = rng.normal(0, 0.1, c).astype(np.float32)
        blobs[prefix + name + "_riv"] = rng.uniform(0.5, 1.5, c).astype(np.float32)

    if family == "r2plus1d":
        w("conv1_middle_w", [45, 3, 1, 7, 7]), bn("conv1_middle_spatbn_relu", 45)
        w("conv1_w", [64, 45, 3, 1, 1]), bn("conv1_spatbn_relu", 64)
    else:
        kt = 1 if family == "fr2d" or family.startswith("rmc") else frames if family == "r2d" else 3
        w("conv1_w", [64, 3, kt, 7, 7]), bn("conv1_spatbn_relu", 64)

    bottleneck = depth >= 50
    c, inplanes = 0, 64
    for li, n in enumerate(LAYERS[depth]):
        planes = 64 * 2**li
        out = planes * (4 if bottleneck else 1)
        kind = _layer_kind(family, li)
        for k in range(n):
            cin = inplanes if k == 0 else out
            if not bottleneck:
                for j, (a, b) in enumerate(((cin, planes), (planes, planes)), start=1):
                    if kind == "2.5d":
                        m = _mid(a, b)
                        w(f"comp_{c}_conv_{j}_middle_w", [m, a, 1, 3, 3]), bn(f"comp_{c}_spatbn_{j}_middle", m)
                        w(f"comp_{c}_conv_{j}_w", [b, m, 3, 1, 1])
                    else:
                        w(f"comp_{c}_conv_{j}_w", [b, a, 1 if kind == "2d" else 3, 3, 3])
                    bn(f"comp_{c}_spatbn_{j}", b)
            else:
                w(f"comp_{c}_conv_1_w", [planes, cin, 1, 1, 1]), bn(f"comp_{c}_spatbn_1", planes)
                if kind == "2.5d":
                    m = _mid(planes, planes)
                    w(f"comp_{c}_conv_2_middle_w", [m, planes, 1, 3, 3]), bn(f"comp_{c}_spatbn_2_middle", m)
                    w(f"comp_{c}_conv_2_w", [planes, m, 3, 1, 1]), bn(f"comp_{c}_spatbn_2", planes)
                    last = 3
                elif kind == "ip":
                    w(f"comp_{c}_conv_2_middle_w", [planes, planes, 1, 1, 1])
                    bn(f"comp_{c}_spatbn_2_middle", planes)
                    w(f"comp_{c}_conv_2_w", [planes, 1, 3, 3, 3]), bn(f"comp_{c}_spatbn_2", planes)
                    last = 3
                elif kind == "ir":
                    w(f"comp_{c}_conv_3_w", [planes, 1, 3, 3, 3]), bn(f"comp_{c}_spatbn_3", planes)
                    last = 4
                else:
                    w(f"comp_{c}_conv_2_w", [planes, planes, 1 if kind == "2d" else 3, 3, 3])
                    bn(f"comp_{c}_spatbn_2", planes)
                    last = 3
                w(f"comp_{c}_conv_{last}_w", [out, planes, 1, 1, 1]), bn(f"comp_{c}_spatbn_{last}", out)
            if k == 0 and (cin != out or li > 0):
                w(f"shortcut_projection_{c}_w", [out, cin, 1, 1, 1]), bn(f"shortcut_projection_{c}_spatbn", out)
            c += 1
        inplanes = out
    if num_classes:
        w(f"last_out_L{num_classes}_w", [num_classes, inplanes])
        blobs[prefix + f"last_out_L{num_classes}_b"] = rng.normal(0, 0.1, num_classes).astype(np.float32)
    return blobs


def reference_forward(
    blobs: Dict[str, np.ndarray], family: str, depth: int, x: torch.Tensor, pool1: Optional[bool] = None
) -> torch.Tensor:
    """Logits computed straight from the blobs (float64), following VMZ's network definition."""
    b = {k: torch.from_numpy(v).double() for k, v in blobs.items()}
    x = x.double()
    pool1 = family in ("ir_csn", "ip_csn") if pool1 is None else pool1

    def conv(x, name, stride=(1, 1, 1), pad=None, groups=1):
        wt = b[name]
        pad = pad if pad is not None else tuple(k // 2 for k in wt.shape[2:])
        return F.conv3d(x, wt, stride=stride, padding=pad, groups=groups)

    def bn(x, name, relu):
        s, sh, rm, rv = (b[name + suf].view(1, -1, 1, 1, 1) for suf in ("_s", "_b", "_rm", "_riv"))
        y = (x - rm) / torch.sqrt(rv + EPS) * s + sh
        return F.relu(y) if relu else y

    if family == "r2plus1d":
        x = bn(conv(x, "conv1_middle_w", (1, 2, 2)), "conv1_middle_spatbn_relu", True)
        x = bn(conv(x, "conv1_w"), "conv1_spatbn_relu", True)
    else:
        pad_t = 0 if family in ("r2d", "fr2d") or family.startswith("rmc") else 1
        x = bn(conv(x, "conv1_w", (1, 2, 2), (pad_t, 3, 3)), "conv1_spatbn_relu", True)
    if pool1:
        x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))

    bottleneck = depth >= 50
    c = 0
    for li, n in enumerate(LAYERS[depth]):
        kind = _layer_kind(family, li)
        for k in range(n):
            s = 2 if (k == 0 and li > 0) else 1
            st = s if kind != "2d" else 1
            inp = x

            def unit(x, j, stride_s, stride_t):
                if kind == "2.5d":
                    x = bn(
                        conv(x, f"comp_{c}_conv_{j}_middle_w", (1, stride_s, stride_s)),
                        f"comp_{c}_spatbn_{j}_middle",
                        True,
                    )
                    return conv(x, f"comp_{c}_conv_{j}_w", (stride_t, 1, 1))
                return conv(x, f"comp_{c}_conv_{j}_w", (stride_t, stride_s, stride_s))

            if not bottleneck:
                x = bn(unit(x, 1, s, st), f"comp_{c}_spatbn_1", True)
                x = bn(unit(x, 2, 1, 1), f"comp_{c}_spatbn_2", False)
            else:
                x = bn(conv(x, f"comp_{c}_conv_1_w"), f"comp_{c}_spatbn_1", True)
                if kind == "ip":
                    x = bn(conv(x, f"comp_{c}_conv_2_middle_w"), f"comp_{c}_spatbn_2_middle", False)
                    x = conv(x, f"comp_{c}_conv_2_w", (s, s, s), groups=x.shape[1])
                    x, last = bn(x, f"comp_{c}_spatbn_2", True), 3
                elif kind == "ir":
                    x = conv(x, f"comp_{c}_conv_3_w", (s, s, s), groups=x.shape[1])
                    x, last = bn(x, f"comp_{c}_spatbn_3", True), 4
                else:
                    x, last = bn(unit(x, 2, s, st), f"comp_{c}_spatbn_2", True), 3
                x = bn(conv(x, f"comp_{c}_conv_{last}_w"), f"comp_{c}_spatbn_{last}", False)
            if f"shortcut_projection_{c}_w" in b:
                inp = bn(conv(inp, f"shortcut_projection_{c}_w", (st, s, s)), f"shortcut_projection_{c}_spatbn", False)
            x = F.relu(x + inp)
            c += 1
    x = x.mean(dim=(2, 3, 4))  # caffe2's final_avg covers the whole map for these input sizes
    fc = [k for k in b if k.startswith("last_out_L") and k.endswith("_w")]
    return x @ b[fc[0]].t() + b[fc[0][:-2] + "_b"]
