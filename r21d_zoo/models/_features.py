"""Feature-map extraction: timm's index semantics and a features-only wrapper that keeps checkpoint key names."""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn


def feature_take_indices(
    num_features: int, indices: Optional[Union[int, Sequence[int]]] = None
) -> Tuple[List[int], int]:
    """``None``: all; an int k: the last k; a sequence: those indices (negative allowed). Returns (indices, max)."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"last-n ({indices}) must be in 1..{num_features}")
        take = [num_features - indices + i for i in range(indices)]
    else:
        take = []
        for i in indices:
            idx = num_features + i if i < 0 else i
            if not 0 <= idx < num_features:
                raise ValueError(f"feature index {i} is out of range for {num_features} feature maps")
            take.append(idx)
    return take, max(take)


class FeatureInfo:
    """timm's ``FeatureInfo``: ``info`` describes every stage, ``out_indices`` the stages a features-only model
    returns; accessors give values at ``out_indices`` by default, or at the stage index (indices) ``idx``."""

    def __init__(self, info: List[Dict], out_indices: Sequence[int]):
        self.info = [dict(f, index=i) for i, f in enumerate(info)]
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, (list, tuple)):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def get_dicts(
        self, keys: Optional[Sequence[str]] = None, idx: Optional[Union[int, Sequence[int]]] = None
    ) -> Union[Dict, List[Dict]]:
        def pick(i: int) -> Dict:
            return dict(self.info[i]) if keys is None else {k: self.info[i][k] for k in keys}

        if idx is None:
            return [pick(i) for i in self.out_indices]
        return [pick(i) for i in idx] if isinstance(idx, (list, tuple)) else pick(idx)

    def channels(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        return self.get("reduction", idx)

    def temporal_reduction(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        return self.get("temporal_reduction", idx)

    def module_name(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        return self.get("module", idx)

    def __len__(self) -> int:
        return len(self.info)

    def __getitem__(self, i: int) -> Dict:
        return self.info[i]


class FeatureListNet(nn.Module):
    """Returns the feature maps at ``out_indices`` (0 = stem, 1-4 = layers) as a list; later stages and the head are
    dropped (timm's ``feature_cls="list"``, and ``"hook"``: hooks on these stages would return the same maps).

    Stages are held under their original names, so the model's state dict keys (minus ``fc``) still apply.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] = (0, 1, 2, 3, 4)):
        super().__init__()
        take, last = feature_take_indices(len(model.feature_info), out_indices)
        self.out_indices = take
        self.feature_info = FeatureInfo(model.feature_info, take)
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None)
        self._names = [f["module"] for f in model.feature_info[: last + 1]]
        for name in self._names:
            self.add_module(name, getattr(model, name))

    @property
    def default_cfg(self) -> Optional[Dict[str, Any]]:
        """timm's alias of ``pretrained_cfg``."""
        return self.pretrained_cfg

    def named_maps(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = {}
        for i, name in enumerate(self._names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return list(self.named_maps(x).values())


class FeatureDictNet(FeatureListNet):
    """timm's ``feature_cls="dict"``: the same maps by stage name (``stem``, ``layer1`` ...)."""

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:  # type: ignore[override]
        return self.named_maps(x)


class FeatureGetterNet(nn.Module):
    """timm's ``feature_cls="getter"``: the model itself, pruned after the last index (and its head), returning
    ``forward_intermediates`` at ``out_indices``; its state dict keys are the model's under ``model.``, as timm's."""

    def __init__(self, model: nn.Module, out_indices: Sequence[int] = (0, 1, 2, 3, 4)):
        super().__init__()
        self.out_indices = model.prune_intermediate_layers(list(out_indices), prune_head=True)
        self.feature_info = FeatureInfo(model.feature_info, self.out_indices)
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None)
        self.model = model

    @property
    def default_cfg(self) -> Optional[Dict[str, Any]]:
        return self.pretrained_cfg

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.model.forward_intermediates(x, self.out_indices, intermediates_only=True)


FEATURE_CLASSES = {"list": FeatureListNet, "hook": FeatureListNet, "dict": FeatureDictNet, "getter": FeatureGetterNet}


def features_net(model: nn.Module, out_indices: Sequence[int], feature_cls: str = "list") -> nn.Module:
    """The features-only form of ``model`` that timm's ``feature_cls`` names."""
    if feature_cls not in FEATURE_CLASSES:
        raise ValueError(f"feature_cls={feature_cls!r} is not supported; use one of {', '.join(FEATURE_CLASSES)}")
    return FEATURE_CLASSES[feature_cls](model, out_indices)
