"""Shared test helpers."""

import torch
import torch.nn as nn


def randomise_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (2D or 3D), so weight transforms are really exercised; returns
    the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()
