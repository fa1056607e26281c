"""timm interop: every r21d_zoo architecture is an entrypoint in timm's registry, with its weight tags as timm
pretrained cfgs, so ``timm.create_model("r2plus1d_34.ig65m_ft_kinetics400_32f", pretrained=True)``,
``timm.list_models("r2plus1d*", pretrained=True)`` and ``timm.create_model("hf-hub:...")`` / ``"local-dir:..."`` on a
``save_pretrained`` folder work after ``import r21d_zoo``.

Each timm entrypoint calls :func:`r21d_zoo.create_model`, so both return the same model with the same
``pretrained_cfg``. timm's own ``PretrainedCfg`` has no fields for video clips (frames, frame rate, stride, resize
size), so the registry copy carries what timm can express (input size C x T x H x W, mean, std, interpolation, classes,
provenance) and the model's ``pretrained_cfg`` carries the rest. Names timm already uses are left to timm.
"""

import sys
from collections import deque
from pathlib import Path
from typing import Any, Dict, Optional

import torch.nn as nn

from ._factory import create_model
from ._pretrained import PretrainedCfg
from ._registry import _model_default_cfgs, list_models


def _timm_cfg(cfg: PretrainedCfg) -> Any:
    from timm.models._pretrained import PretrainedCfg as TimmCfg

    return TimmCfg(
        url=cfg.url or "",
        hf_hub_id=cfg.hf_hub_id,
        architecture=cfg.architecture,
        tag=cfg.tag,
        input_size=cfg.input_size,
        fixed_input_size=False,
        interpolation=cfg.clip.interpolation,
        crop_pct=1.0,
        crop_mode="center",
        mean=cfg.clip.mean,
        std=cfg.clip.std,
        num_classes=cfg.num_classes,
        label_names=cfg.label_names,
        first_conv=cfg.first_conv,
        classifier=cfg.classifier,
        license=cfg.license,
        origin_url=cfg.origin_url,
        paper_ids=cfg.paper_ids,
        paper_name=cfg.paper_name,
        notes=cfg.notes,
    )


def _source(arch: str, pretrained_cfg: Any) -> str:
    """The r21d_zoo name for what timm hands an entrypoint: a tag, or the cfg of an hf-hub:/local-dir: folder."""
    if pretrained_cfg is None or pretrained_cfg == "":
        return arch
    if isinstance(pretrained_cfg, str):
        return f"{arch}.{pretrained_cfg}"
    get = pretrained_cfg.get if isinstance(pretrained_cfg, dict) else lambda k: getattr(pretrained_cfg, k, None)
    if get("hf_hub_id"):
        return f"hf-hub:{get('hf_hub_id')}"
    if get("file"):  # timm's local-dir: sets the folder; a weights file names its folder
        folder = Path(get("file"))
        return f"local-dir:{folder if folder.is_dir() else folder.parent}"
    return f"{arch}.{get('tag')}" if get("tag") else arch


def _entrypoint(arch: str):
    def entrypoint(
        pretrained: bool = False,
        pretrained_cfg: Any = None,
        pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
        cache_dir: Optional[str] = None,
        **kwargs: Any,
    ) -> nn.Module:
        kwargs.pop("pretrained_model_args", None)  # timm's copy of a saved folder's model_args; create_model reads them
        return create_model(
            _source(arch, pretrained_cfg),
            pretrained=pretrained,
            pretrained_cfg_overlay=pretrained_cfg_overlay,
            cache_dir=cache_dir,
            **kwargs,
        )

    entrypoint.__name__ = entrypoint.__qualname__ = arch
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"r21d_zoo's {arch} (see r21d_zoo.create_model)."
    return entrypoint


default_cfgs: Dict[str, Any] = {}  # timm's registry reads the registering module's default_cfgs


def register_in_timm() -> None:
    try:
        import timm.models as timm_models
        from timm.models._pretrained import DefaultCfg
    except ImportError:  # timm is a dependency, but interop is not worth failing the import for
        return
    module = sys.modules[__name__]
    taken = set(timm_models.list_models())
    for arch in list_models():
        if arch in taken:
            continue
        cfgs = _model_default_cfgs[arch]
        default_cfgs[arch] = DefaultCfg(tags=deque(cfgs), cfgs={tag: _timm_cfg(c) for tag, c in cfgs.items()})
        setattr(module, arch, timm_models.register_model(_entrypoint(arch)))
