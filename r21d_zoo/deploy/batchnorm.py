"""BatchNorm folding: an eval-mode BatchNorm3d after a Conv3d becomes that conv's scale and bias (exact up to float
rounding), for the inference copies of :mod:`~r21d_zoo.deploy.optimize` and the exported graphs."""

from typing import Optional, Tuple

import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _last_conv(module: nn.Module) -> Optional[Tuple[nn.Sequential, int]]:
    """The (container, index) of the conv that produces ``module``'s output, if its output is a conv's output."""
    if isinstance(module, nn.Sequential) and len(module):
        last = module[len(module) - 1]
        if isinstance(last, nn.Conv3d):
            return module, len(module) - 1
        return _last_conv(last)
    return None


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm3d that directly follows a Conv3d (possibly the last conv of a nested
    ``Sequential``, e.g. a (2+1)D conv) into that conv, in place. Returns the number folded. The model must be in
    eval mode; the folded model has conv biases and ``Identity`` where the BNs were (a different state dict)."""
    if model.training:
        raise ValueError("fold BatchNorm only in eval mode (call model.eval() first)")
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(1, len(seq)):
            bn = seq[i]
            if not isinstance(bn, nn.BatchNorm3d):
                continue
            prev = seq[i - 1]
            target = (seq, i - 1) if isinstance(prev, nn.Conv3d) else _last_conv(prev)
            if target is None:
                continue
            container, j = target
            container[j] = fuse_conv_bn_eval(container[j], bn)
            seq[i] = nn.Identity()
            folded += 1
    return folded
