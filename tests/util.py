"""Shared test helpers."""

import os

import torch
import torch.nn as nn


def learning_seed() -> int:
    """The seed of the learning tests' data and training (``R21D_ZOO_TEST_SEED``, default 0). Their claims must hold
    at any seed; rerun them at others to see their margin: ``R21D_ZOO_TEST_SEED=1 python -m pytest -m slow``."""
    return int(os.environ.get("R21D_ZOO_TEST_SEED", "0"))


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
