"""The model API: what every architecture family gives, and the only thing code outside ``models/`` may use.

It is timm's interface for video: ``B x C x T x H x W`` clips in, ``feature_info`` naming the stages (each a direct
child module run in order, so features-only wrappers can hold them), and the cfg's ``first_conv`` / ``classifier``
naming the input conv and the head. A new family subclasses :class:`VideoModel`, fills in the abstract methods and
registers entrypoints with :func:`register_model` that call :func:`build_model_with_cfg`."""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn


class VideoModel(nn.Module):
    """Base of every architecture. Subclasses set ``num_classes``, ``num_features`` and ``feature_info`` (a list of
    dicts with ``num_chs``, ``reduction``, ``temporal_reduction`` and ``module``) and implement the methods that raise
    ``NotImplementedError`` here; ``forward`` is ``forward_head(forward_features(x))``.

    ``pretrained_cfg`` (a flat dict, see :class:`PretrainedCfg`) is set by the builder; setting it also sets timm's
    ``pool_size`` for its ``input_size``."""

    __jit_unused_properties__ = ["default_cfg", "pretrained_cfg"]
    num_classes: int
    num_features: int
    feature_info: List[Dict[str, Any]]

    @property
    def pretrained_cfg(self) -> Optional[Dict[str, Any]]:
        return self.__dict__.get("_pretrained_cfg")

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: Optional[Dict[str, Any]]) -> None:
        if cfg is not None and cfg.get("input_size"):
            cfg["pool_size"] = self.pool_size(cfg["input_size"][1:])
        self.__dict__["_pretrained_cfg"] = cfg

    @property
    def default_cfg(self) -> Optional[Dict[str, Any]]:
        """timm's alias of ``pretrained_cfg`` (the same dict), read by timm's tests and much user code."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: Optional[Dict[str, Any]]) -> None:
        self.pretrained_cfg = cfg

    def pool_size(self, clip_size: Sequence[int]) -> Tuple[int, int, int]:
        """T x H x W of the final feature map for a T x H x W clip (every stride-2 step rounds up)."""
        t, h, w = clip_size
        last = self.feature_info[-1]
        return (-(-t // last["temporal_reduction"]), -(-h // last["reduction"]), -(-w // last["reduction"]))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled final feature map, B x num_features x t x h x w."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled logits, or with ``pre_logits`` the pooled B x num_features features."""
        raise NotImplementedError

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCTHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Feature maps of the stages of ``feature_info``, with timm's signature and index semantics."""
        raise NotImplementedError

    def get_classifier(self, name_only: bool = False) -> Union[str, nn.Module]:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the head; ``num_classes=0`` makes ``forward`` return pooled features of size ``num_features``."""
        raise NotImplementedError

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no gradient checkpointing")

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """timm's parameter groups (``stem`` and ``blocks`` regexes), for layer-wise learning rates."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``, remembering that weights were loaded: a model saved without ever loading
        any claims none of the registry weights' provenance (see :func:`model_config`)."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._weights_loaded = True
        return result


def stage_modules(model: nn.Module) -> List[nn.Module]:
    """The stages of ``feature_info`` in order (stem first), for freezing the first k of them."""
    return [model.get_submodule(f["module"]) for f in model.feature_info]


def input_channels(model: nn.Module) -> int:
    """Channels the model takes: those of the cfg's ``first_conv``."""
    return int(model.get_submodule(model.pretrained_cfg["first_conv"]).in_channels)
