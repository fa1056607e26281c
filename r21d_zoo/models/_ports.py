"""Third-party PyTorch ports whose key names differ from ours, renamed to torchvision's ``VideoResNet`` names.

Only mmaction2's CSN checkpoints (``ResNet3dCSN`` backbone + ``I3DHead``) need it: every module is an mmcv
``ConvModule`` (``.conv`` + ``.bn``), the stem is ``conv1``, and the ip-CSN middle conv is ``conv2.0`` (1x1x1 conv
+ BN) then ``conv2.1`` (depthwise conv + BN + ReLU) where ours is ``conv2.0.{0,1,2}`` + ``conv2.1``. Full models
carry a ``backbone.`` prefix and ``cls_head.fc_cls``; backbone-only files (``*_from_scratch_*``) have neither.
"""

import logging
import re
from typing import Dict, List, Optional, Tuple

import torch

_logger = logging.getLogger(__name__)

MMACTION2_CSN = "mmaction2_csn"
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_UNIT = r"^(layer\d+\.\d+)\."
_COMMON: List[Tuple[str, str]] = [
    (r"^conv1\.conv\.weight$", r"stem.0.weight"),
    (rf"^conv1\.bn\.{_BN}$", r"stem.1.\1"),
    (_UNIT + r"(conv1|conv3|downsample)\.conv\.weight$", r"\1.\2.0.weight"),
    (_UNIT + rf"(conv1|conv3|downsample)\.bn\.{_BN}$", r"\1.\2.1.\3"),
    (r"^cls_head\.fc_cls\.(weight|bias)$", r"fc.\1"),
]
_IR = [
    (_UNIT + r"conv2\.0\.conv\.weight$", r"\1.conv2.0.weight"),
    (_UNIT + rf"conv2\.0\.bn\.{_BN}$", r"\1.conv2.1.\2"),
]
_IP = [
    (_UNIT + r"conv2\.0\.conv\.weight$", r"\1.conv2.0.0.weight"),
    (_UNIT + rf"conv2\.0\.bn\.{_BN}$", r"\1.conv2.0.1.\2"),
    (_UNIT + r"conv2\.1\.conv\.weight$", r"\1.conv2.0.2.weight"),
    (_UNIT + rf"conv2\.1\.bn\.{_BN}$", r"\1.conv2.1.\2"),
]


def detect_key_format(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """The third-party layout of a state dict, or None for ours (torchvision's names)."""
    if "conv1.conv.weight" in state_dict or "backbone.conv1.conv.weight" in state_dict:
        return MMACTION2_CSN
    return None


def from_mmaction2_csn(state_dict: Dict[str, torch.Tensor], origin: str = "<state dict>") -> Dict[str, torch.Tensor]:
    """mmaction2 CSN keys to ours. Every key must be renamed (an unknown one is an error naming it); BatchNorm's
    ``num_batches_tracked`` is added as 0 where the file has none (it plays no part in evaluation)."""
    sd = {k[len("backbone.") :] if k.startswith("backbone.") else k: v for k, v in state_dict.items()}
    ip = any(re.match(_UNIT + r"conv2\.1\.conv\.weight$", k) for k in sd)
    rules = [(re.compile(p), r) for p, r in _COMMON + (_IP if ip else _IR)]
    out: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        for pattern, replacement in rules:
            if pattern.match(key):
                out[pattern.sub(replacement, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"{origin}: mmaction2 {'ip' if ip else 'ir'}-CSN key(s) with no counterpart here: {', '.join(unknown[:8])}"
            f"{' ...' if len(unknown) > 8 else ''}"
        )
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    _logger.info("%s: renamed %d mmaction2 %s-CSN keys", origin, len(out), "ip" if ip else "ir")
    return out


KEY_FORMATS = {MMACTION2_CSN: from_mmaction2_csn}
