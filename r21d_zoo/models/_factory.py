"""``create_model``: the one way in, for registry names, ``hf-hub:`` repos and ``local-dir:`` folders."""

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch.nn as nn

from ._download import OFFLINE_HINT, hf_download, split_repo_revision
from ._files import WeightsError, config_label_names, find_weights_file, read_config_json
from ._pretrained import PretrainedCfg
from ._registry import get_pretrained_cfg, model_entrypoint, resolve_model_name, split_model_name_tag


def _cfg_from_config(config: Dict[str, Any], source: Dict[str, Any]) -> Tuple[str, PretrainedCfg, Dict[str, Any]]:
    """Architecture, pretrained cfg and model kwargs from a ``config.json`` (timm's nested or flat format)."""
    pcfg = dict(config.get("pretrained_cfg", config))
    arch = config.get("architecture") or pcfg.get("architecture")
    if not arch:
        raise WeightsError("config.json names no 'architecture'")
    arch_name, _ = split_model_name_tag(resolve_model_name(arch))
    pcfg.setdefault("architecture", arch_name)
    pcfg["num_classes"] = config.get("num_classes", pcfg.get("num_classes", 400))
    names = config_label_names(config)
    if names and len(names) == pcfg["num_classes"]:
        pcfg["label_names"] = names  # e.g. a fine-tuned model's own classes
    for k in ("url", "mirrors", "hf_hub_id", "hf_hub_revision", "file"):
        pcfg.pop(k, None)
    pcfg.update(source)
    model_args = dict(config.get("model_args") or {})
    model_args.setdefault("num_classes", pcfg["num_classes"])
    try:
        cfg = PretrainedCfg.from_dict(pcfg)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"the pretrained_cfg of config.json does not describe a weight: {e}") from e
    cfg = cfg.replace(model_args={k: v for k, v in cfg.model_args.items() if k not in model_args})
    return arch_name, cfg, model_args


def _saved_model_source(
    model_name: str, cache_dir: Optional[str]
) -> Optional[Tuple[str, PretrainedCfg, Dict[str, Any]]]:
    """For ``hf-hub:org/repo[@rev]`` and ``local-dir:/path``: architecture, cfg and model args from config.json."""
    if model_name.startswith(("hf-hub:", "hf_hub:")):
        repo_id, revision = split_repo_revision(model_name.split(":", 1)[1])
        try:
            config_path = hf_download(repo_id, "config.json", revision, cache_dir)
        except Exception as e:  # offline miss, unknown repo or revision, network failure
            raise WeightsError(
                f"could not fetch config.json of hf-hub:{repo_id} ({type(e).__name__}: {e}).\n{OFFLINE_HINT}"
            ) from e
        config = read_config_json(str(Path(config_path).parent))
        return _cfg_from_config(config, dict(hf_hub_id=repo_id, hf_hub_revision=revision))
    if model_name.startswith("local-dir:"):
        directory = model_name.split(":", 1)[1]
        return _cfg_from_config(read_config_json(directory), dict(file=find_weights_file(directory)))
    return None


def create_model(
    model_name: str,
    pretrained: bool = False,
    pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
    checkpoint_path: Optional[str] = None,
    cache_dir: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """Create a model by name.

    Args:
        model_name: ``arch`` (its default weights), ``arch.tag`` (a specific weight), an anchor-project alias
            (``r2plus1d_34_32_ig65m``), ``hf-hub:org/repo[@revision]`` or ``local-dir:/path`` (both need a
            ``config.json`` written by ``save_pretrained``; their weights are always loaded).
        pretrained: load the weights. Tried in order: ``checkpoint_path``, the cfg's HF Hub repo, its URLs
            (hash-checked; caffe2 ``.pkl`` files are converted on the fly).
        pretrained_cfg_overlay: replace fields of the weight's cfg (e.g. ``dict(file='/x.safetensors')``).
        checkpoint_path: a ``.safetensors``, ``.pth`` or caffe2 ``.pkl`` file to load instead of downloading.
        cache_dir: download cache (default: the HF cache for the Hub, ``$TORCH_HOME/hub/checkpoints`` for URLs).
        **kwargs: model arguments (``num_classes``, ``in_chans``, ``drop_rate``, ``channel_multiplier``,
            ``global_pool``, ``pool1``, ``zero_init_residual``, ``bn_eps``, ``mid_width``), plus ``features_only``,
            ``out_indices`` and ``feature_cls`` (timm's: ``"list"``, ``"hook"``, ``"dict"``, ``"getter"``).
            Arguments set to ``None`` are ignored. A ``num_classes`` that differs from the weights replaces the
            classifier (and only the classifier).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    saved = _saved_model_source(model_name, cache_dir)
    if saved is not None:  # hf-hub: / local-dir: folders written by save_pretrained; their weights always load
        arch, cfg, model_args = saved
        try:
            return model_entrypoint(arch)(
                pretrained=True,
                pretrained_cfg=cfg,
                pretrained_cfg_overlay=pretrained_cfg_overlay,
                checkpoint_path=checkpoint_path,
                cache_dir=cache_dir,
                **dict(model_args, **kwargs),
            )
        except TypeError as e:  # an argument the architecture does not take: the caller's, or the folder's
            if any(f"'{k}'" in str(e) for k in kwargs):
                raise
            raise WeightsError(f"{model_name}: the model_args of its config.json {model_args} do not fit {arch}: {e}")
    if any(c in model_name for c in "/\\:"):
        raise ValueError(
            f"{model_name!r} looks like a path or repo: use 'local-dir:{model_name}' for a folder "
            f"written by save_pretrained, 'hf-hub:{model_name}' for a Hub repo, or checkpoint_path= for "
            f"a weights file."
        )
    name = resolve_model_name(model_name)
    return model_entrypoint(name)(
        pretrained=pretrained,
        pretrained_cfg=get_pretrained_cfg(name),
        pretrained_cfg_overlay=pretrained_cfg_overlay,
        checkpoint_path=checkpoint_path,
        cache_dir=cache_dir,
        **kwargs,
    )


def from_pretrained(name_or_path: str, **kwargs: Any) -> nn.Module:
    """Load a model saved with ``save_pretrained``: a local folder, or an HF Hub repo id (``org/repo[@rev]``)."""
    if Path(name_or_path).is_dir():
        return create_model(f"local-dir:{name_or_path}", **kwargs)
    if "/" in name_or_path and ":" not in name_or_path:
        return create_model(f"hf-hub:{name_or_path}", **kwargs)
    return create_model(name_or_path, pretrained=True, **kwargs)
