"""A pretrained cfg resolved to a state dict (a user's file, the cfg's file, its Hub repo, then its URLs) and loaded
strictly under a head policy: ``keep`` the file's classifier, or a ``new`` head when another ``num_classes`` was
asked for (then exactly the classifier keys may be missing)."""

from typing import Dict, List, Literal, Optional, Tuple

import torch
import torch.nn as nn

from ._download import OFFLINE_HINT, download_url, hf_download, verified_mirror
from ._files import WeightsError, converted_caffe2, read_state_dict
from ._pretrained import PretrainedCfg
from ._surgery import adapt_input_conv

HeadPolicy = Literal["keep", "new"]


def load_weights(
    cfg: PretrainedCfg,
    model: nn.Module,
    checkpoint_path: Optional[str] = None,
    cache_dir: Optional[str] = None,
    need_head: bool = True,
) -> Tuple[Dict[str, torch.Tensor], str]:
    """Fetch the weights for ``cfg``: checkpoint_path, then ``cfg.file``, the HF Hub repo, then the URLs in order
    (:meth:`PretrainedCfg.download_sources`). Backbone-only files are skipped when ``need_head``; mirrors without a
    hash are skipped unless ``r21d-zoo verify-weights`` matched them to the original.

    Returns the state dict and a description of where it came from (used in error messages).
    """
    if checkpoint_path:
        return read_state_dict(checkpoint_path, model), checkpoint_path
    if cfg.file:
        return read_state_dict(cfg.file, model), cfg.file
    attempts: List[str] = []
    if cfg.hf_hub_id:
        try:
            path = hf_download(cfg.hf_hub_id, "model.safetensors", cfg.hf_hub_revision, cache_dir)
            return _checked(read_state_dict(path, model), cfg, f"hf-hub:{cfg.hf_hub_id} ({path})")
        except WeightsError:
            raise
        except Exception as e:  # offline miss, repo or revision not found, network failure
            attempts.append(f"hf-hub:{cfg.hf_hub_id}: {type(e).__name__}: {e}")
    for src in cfg.download_sources():
        if need_head and not src["head"]:
            attempts.append(f"{src['url']}: backbone only, used when a new head is asked for (num_classes=N)")
            continue
        if src["mirror"] and not src["hash_prefix"]:
            found, why_not = verified_mirror(src["url"], cache_dir)
            if found is None:
                attempts.append(f"{src['url']}: skipped, {why_not} (r21d-zoo verify-weights {cfg.name})")
                continue
        try:
            path = download_url(src["url"], src["hash_prefix"], cache_dir=cache_dir)
        except WeightsError:
            raise
        except Exception as e:
            attempts.append(f"{src['url']}: {type(e).__name__}: {e}")
            continue
        if src.get("source_format") == "caffe2_pkl":
            if not path.endswith(".pkl"):
                raise WeightsError(f"{path} should be a caffe2 .pkl")
            return _checked(converted_caffe2(path, model), cfg, f"{src['url']} ({path})")
        return _checked(read_state_dict(path, model), cfg, f"{src['url']} ({path})")
    if not attempts:
        raise WeightsError(f"{cfg.name} has no weights (no checkpoint_path, file, hf_hub_id or url).")
    raise WeightsError(f"could not fetch weights for {cfg.name}:\n  " + "\n  ".join(attempts) + "\n" + OFFLINE_HINT)

def _checked(
    state_dict: Dict[str, torch.Tensor], cfg: PretrainedCfg, origin: str
) -> Tuple[Dict[str, torch.Tensor], str]:
    check_source_classes(state_dict, cfg, origin)
    return state_dict, origin


def _mismatch_report(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> str:
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: model {tuple(own[k].shape)} vs file {tuple(state_dict[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if own[k].shape != state_dict[k].shape
    ]
    lines = []
    for title, items in (("missing in file", missing), ("unexpected in file", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            lines.append(f"{title}: {', '.join(items[:8])}{more}")
    return "; ".join(lines)

def check_source_classes(state_dict: Dict[str, torch.Tensor], cfg: PretrainedCfg, origin: str) -> None:
    """A tag's own source (not a user's file) must hold the tag's classifier."""
    fc_w = f"{cfg.classifier}.weight"
    file_classes = state_dict[fc_w].shape[0] if fc_w in state_dict else None
    if file_classes is not None and cfg.num_classes is not None and file_classes != cfg.num_classes:
        raise WeightsError(
            f"{origin} has a {file_classes}-class classifier but {cfg.name} expects {cfg.num_classes} classes: "
            f"wrong file for this tag."
        )


def load_into_model(
    model: nn.Module, state_dict: Dict[str, torch.Tensor], cfg: PretrainedCfg, origin: str, head: HeadPolicy = "keep"
) -> None:
    """Load strictly. ``head="keep"``: the file's classifier must fit the model. ``head="new"`` (another
    ``num_classes`` was asked for): the classifier is left out when it does not fit, and then exactly the classifier
    keys may be missing. A first conv with another number of input channels is adapted (:func:`adapt_input_conv`)."""
    if head not in ("keep", "new"):
        raise ValueError(f"head must be 'keep' or 'new', got {head!r}")
    fc_w, fc_b = f"{cfg.classifier}.weight", f"{cfg.classifier}.bias"
    state_dict = dict(state_dict)
    file_classes = state_dict[fc_w].shape[0] if fc_w in state_dict else None
    first = f"{cfg.first_conv}.weight"
    own = model.state_dict()
    if first in state_dict and first in own and state_dict[first].shape[1] != own[first].shape[1]:
        state_dict[first] = adapt_input_conv(own[first].shape[1], state_dict[first])
    model_classes = getattr(model, "num_classes", None)
    if file_classes is None and model_classes and head == "keep":
        raise WeightsError(
            f"{origin} holds a backbone only (no {fc_w}): pass num_classes=N to train a new head on it, or 0 for "
            f"features."
        )
    if model_classes != file_classes and (file_classes is not None or head == "new"):
        if head == "keep":
            raise WeightsError(
                f"{origin} has {file_classes} classes but the model was built with {model_classes}: pass "
                f"num_classes={file_classes} to load it as it is, or another num_classes to train a new head."
            )
        state_dict.pop(fc_w, None)
        state_dict.pop(fc_b, None)
        result = model.load_state_dict(state_dict, strict=False)
        expected_missing = {fc_w, fc_b} if model_classes else set()
        if set(result.missing_keys) != expected_missing or result.unexpected_keys:
            raise WeightsError(f"{origin} does not fit {cfg.name}: {_mismatch_report(model, state_dict)}")
        return
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise WeightsError(
            f"{origin} does not fit {cfg.name} (strict load): {_mismatch_report(model, state_dict)}. Check that the "
            f"file is for this architecture (see `r21d-zoo info {cfg.name}`)."
        ) from e
