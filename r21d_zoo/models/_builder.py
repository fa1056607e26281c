"""Build a model from an entrypoint's numbers plus a pretrained cfg, then load its weights strictly."""

import inspect
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Type

import torch.nn as nn

from ._features import features_net
from ._loading import load_into_model, load_weights
from ._pretrained import PretrainedCfg
from ._registry import get_pretrained_cfg


def resolve_pretrained_cfg(
    variant: str,
    pretrained_cfg: Optional[PretrainedCfg] = None,
    pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
) -> PretrainedCfg:
    cfg = pretrained_cfg if pretrained_cfg is not None else get_pretrained_cfg(variant)
    if pretrained_cfg_overlay:
        cfg = cfg.replace(**pretrained_cfg_overlay)
    return cfg


def loaded_from(cfg: PretrainedCfg) -> Optional[str]:
    """The name of the weights a cfg loads: the tag, the Hub repo, the folder of a saved model, else its own base."""
    if cfg.tag:
        return cfg.name
    if cfg.hf_hub_id:
        return cfg.hf_hub_id
    if cfg.file:
        return str(Path(cfg.file).parent)
    return cfg.base_model


def model_arguments(model_cls: Type[nn.Module]) -> List[str]:
    """The keyword arguments an architecture class takes (those with defaults: the ones a user may set)."""
    params = inspect.signature(model_cls).parameters.values()
    return [p.name for p in params if p.default is not p.empty]


def _accepted(model_cls: Type[nn.Module], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """``kwargs``, or a TypeError naming the first one ``model_cls`` does not take and the ones it does."""
    params = inspect.signature(model_cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            raise TypeError(
                f"{model_cls.__name__} got an unexpected keyword argument {unknown[0]!r} (the arguments it takes: "
                f"{', '.join(model_arguments(model_cls))})"
            )
    return kwargs


def build_model_with_cfg(
    model_cls: Type[nn.Module],
    variant: str,
    pretrained: bool,
    pretrained_cfg: Optional[PretrainedCfg] = None,
    pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
    checkpoint_path: Optional[str] = None,
    cache_dir: Optional[str] = None,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3, 4),
    feature_cls: str = "list",
    **kwargs: Any,
) -> nn.Module:
    """Resolve the cfg, apply the architecture args the weights need, build, load, optionally wrap as features-only.

    ``kwargs`` are the entrypoint's numbers merged with the user's model kwargs. Architecture args from the cfg
    (``bn_eps``, ``mid_width``, ``pool1``, ...) fill in what the user did not pass; when weights are loaded, passing a
    conflicting value is an error because the weights would silently compute something else.

    A head of another size than the weights' (``num_classes``) is a model of its own: its cfg is derived (no tag,
    source, published results or label names of the weights; ``base_model`` names the weights it loaded, or None
    without weights), keeping the weights' preprocessing. ``label_names`` names the classes (and sets
    ``num_classes`` to their count).
    """
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg, pretrained_cfg_overlay)
    load = pretrained or checkpoint_path is not None
    label_names = kwargs.pop("label_names", None)
    if label_names is not None:
        label_names = tuple(str(name) for name in label_names)
        if kwargs.get("num_classes", len(label_names)) != len(label_names) or not label_names:
            raise ValueError(
                f"{len(label_names)} label_names for num_classes={kwargs.get('num_classes')}: give one name per class"
            )
        kwargs["num_classes"] = len(label_names)
    for key, value in cfg.model_args.items():
        if key in kwargs and kwargs[key] != value and load:
            raise ValueError(
                f"{cfg.name} weights need {key}={value!r}, got {key}={kwargs[key]!r}. Drop the argument, or build "
                f"without weights."
            )
        kwargs.setdefault(key, value)
    num_classes_requested = "num_classes" in kwargs
    kwargs.setdefault("num_classes", cfg.num_classes if cfg.num_classes is not None else 0)
    kwargs.setdefault("in_chans", cfg.in_chans)

    model = model_cls(**_accepted(model_cls, kwargs))
    model.pretrained_cfg = cfg.to_dict()
    model._model_args = dict(kwargs)
    model._weights_loaded = False  # until a state dict is loaded (VideoModel.load_state_dict; see model_config)
    if load:
        state_dict, origin = load_weights(
            cfg, model, checkpoint_path=checkpoint_path, cache_dir=cache_dir, need_head=not num_classes_requested
        )
        fc_w = f"{cfg.classifier}.weight"
        if cfg.num_classes is None and not num_classes_requested and fc_w in state_dict:
            cfg = cfg.replace(num_classes=int(state_dict[fc_w].shape[0]))  # unpublished class count: the file's
            model.reset_classifier(cfg.num_classes)
            model.pretrained_cfg = cfg.to_dict()
            model._model_args["num_classes"] = cfg.num_classes
        load_into_model(model, state_dict, cfg, origin, head="new" if num_classes_requested else "keep")
    new_head = num_classes_requested and kwargs["num_classes"] != cfg.num_classes
    if new_head:
        cfg = cfg.derive(num_classes=kwargs["num_classes"], base_model=loaded_from(cfg) if load else None)
    if label_names is not None:
        cfg = cfg.replace(labels=label_names, label_set=None)
    if new_head or label_names is not None:
        model.pretrained_cfg = cfg.to_dict()
    if features_only:
        return features_net(model, out_indices, feature_cls)
    return model
