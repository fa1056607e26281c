"""The model registry: the single source of truth for architectures, weight tags and their aliases."""

import difflib
import fnmatch
import re
import sys
import warnings
from typing import Callable, Dict, List, Sequence, Tuple, Union

from ._pretrained import PretrainedCfg

_model_entrypoints: Dict[str, Callable] = {}
_model_default_cfgs: Dict[str, Dict[str, PretrainedCfg]] = {}  # arch -> tag -> cfg (first tag = default)
_model_aliases: Dict[str, str] = {}  # anchor-project name -> 'arch.tag'

__all__ = [
    "register_model",
    "register_model_aliases",
    "list_models",
    "list_pretrained",
    "is_model",
    "model_entrypoint",
    "split_model_name_tag",
    "get_pretrained_cfg",
    "resolve_model_name",
    "list_aliases",
]


def register_model(fn: Callable) -> Callable:
    """Register an entrypoint under its function name, with the ``default_cfgs`` its module declares for it."""
    name = fn.__name__
    if name in _model_entrypoints:
        warnings.warn(f"model {name!r} registered twice; the later registration wins", stacklevel=2)
    module = sys.modules[fn.__module__]
    if hasattr(module, "__all__") and name not in module.__all__:
        module.__all__.append(name)
    _model_entrypoints[name] = fn
    cfgs = getattr(module, "default_cfgs", {}).get(name)
    if not cfgs:
        raise RuntimeError(f"model {name!r} has no entry in default_cfgs of {fn.__module__}")
    _model_default_cfgs[name] = cfgs
    return fn


def register_model_aliases(aliases: Dict[str, str]) -> None:
    for old, new in aliases.items():
        arch, tag = split_model_name_tag(new)
        if tag not in _model_default_cfgs.get(arch, {}):
            raise RuntimeError(f"alias {old!r} points at unknown weight {new!r}")
        _model_aliases[old] = new


def list_aliases() -> Dict[str, str]:
    return dict(_model_aliases)


def split_model_name_tag(name: str) -> Tuple[str, str]:
    arch, _, tag = name.partition(".")
    return arch, tag


def _natural_key(s: str) -> List[Union[int, str]]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s.lower())]


def _match(name: str, filters: Union[str, Sequence[str]]) -> bool:
    filters = [filters] if isinstance(filters, str) else list(filters)
    return any(fnmatch.fnmatch(name, f) for f in filters)


def list_models(
    filter: Union[str, Sequence[str]] = "", pretrained: bool = False, exclude_filters: Union[str, Sequence[str]] = ""
) -> List[str]:
    """Architecture names, or with ``pretrained=True`` every ``arch.tag`` that has weights (fnmatch filters)."""
    if pretrained:
        names = [f"{a}.{t}" for a, cfgs in _model_default_cfgs.items() for t, c in cfgs.items() if t and c.has_weights]
    else:
        names = list(_model_entrypoints)
    if filter:
        names = [n for n in names if _match(n, filter) or (pretrained and _match(n.split(".")[0], filter))]
    if exclude_filters:
        names = [n for n in names if not _match(n, exclude_filters)]
    return sorted(names, key=_natural_key)


def list_pretrained(
    filter: Union[str, Sequence[str]] = "", exclude_filters: Union[str, Sequence[str]] = ""
) -> List[str]:
    return list_models(filter, pretrained=True, exclude_filters=exclude_filters)


def is_model(name: str) -> bool:
    return split_model_name_tag(resolve_model_name(name, strict=False))[0] in _model_entrypoints


def _unknown(name: str) -> KeyError:
    candidates = list(_model_entrypoints) + list_pretrained() + list(_model_aliases)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return KeyError(f"unknown model {name!r}.{hint} `r21d-zoo list` (or r21d_zoo.list_models()) shows them all.")


def resolve_model_name(name: str, strict: bool = True) -> str:
    """Map an alias to its ``arch.tag``; with ``strict``, raise for unknown architectures or tags."""
    name = _model_aliases.get(name, name)
    if strict:
        arch, tag = split_model_name_tag(name)
        if arch not in _model_entrypoints or (tag and tag not in _model_default_cfgs[arch]):
            raise _unknown(name)
    return name


def model_entrypoint(name: str) -> Callable:
    arch, _ = split_model_name_tag(resolve_model_name(name))
    return _model_entrypoints[arch]


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The cfg of ``arch.tag``, or of the architecture's default tag for a bare ``arch``."""
    arch, tag = split_model_name_tag(resolve_model_name(name))
    cfgs = _model_default_cfgs[arch]
    return cfgs[tag] if tag else next(iter(cfgs.values()))
