"""Reading weight files: ``.safetensors``, ``.pth`` (weights only), caffe2 ``.pkl`` (converted once and cached), a
folder's weights file and its ``config.json`` (timm's layout; :func:`model_config` writes what ``save_pretrained``
stores).

Security: ``.pth`` files are only read with ``torch.load(weights_only=True)``; caffe2 pickles go through the restricted
unpickler in :mod:`r21d_zoo.models._caffe2`.
"""

import hashlib
import json
import logging
import pickle
import re
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from .._io import atomic_write
from ._caffe2 import CONVERTER_VERSION, Caffe2ConversionError, caffe2_to_state_dict, load_caffe2_pickle
from ._ports import KEY_FORMATS, detect_key_format
from ._pretrained import PretrainedCfg

_logger = logging.getLogger(__name__)


PREFERRED_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")


class WeightsError(RuntimeError):
    """A weight file could not be found, fetched, verified or matched to the model."""

def _unwrap(obj: Any, path: str) -> Dict[str, torch.Tensor]:
    """Training checkpoints wrap the state dict ({'model': ...} etc.); DDP adds a 'module.' prefix; third-party
    key layouts (mmaction2's CSN) are renamed to ours."""
    for key in ("state_dict", "model_state", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    key_format = detect_key_format(obj)
    if key_format is None:
        return dict(obj)
    try:
        return KEY_FORMATS[key_format](obj, path)
    except ValueError as e:
        raise WeightsError(str(e)) from e

def read_state_dict(path: str, model: Optional[nn.Module] = None) -> Dict[str, torch.Tensor]:
    """Read ``.safetensors``, ``.pth``/``.pt``/``.bin`` (weights only) or a caffe2 ``.pkl`` (needs ``model``)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"checkpoint file {path} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".pkl":  # conversion errors already name the blob; UnsafePickleError passes through untouched
        if model is None:
            raise WeightsError(f"{path} is a caffe2 pickle; converting it needs the target model")
        try:
            return caffe2_to_state_dict(load_caffe2_pickle(str(p)), model)
        except Caffe2ConversionError as e:
            raise Caffe2ConversionError(f"{path}: {e}") from e
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except Exception as e:  # truncated file, bad header
            raise WeightsError(
                f"could not read checkpoint {path} ({type(e).__name__}: {e}). The file may be truncated or "
                f"corrupted, or not a weights file; delete it and download it again."
            ) from e
    return _unwrap(load_weights_only(str(p)), str(p))


_REDOWNLOAD = "delete it and download it again"
_RESAVE = (
    "use a .safetensors file of the weights, or re-save only the state dict (tensors) on a machine where the file's "
    "origin is trusted"
)


def load_weights_only(path: str, fix: Optional[str] = None) -> Any:
    """``torch.load(weights_only=True)`` with errors that name the file and ``fix`` (what the user can do; by default
    the advice for a weights file), never torch's advice to turn the check off: tensors and plain types load, any
    other object is refused unexecuted."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found:  # not a refused object: garbage, or a truncated pickle (torch's advice is not repeated)
            reason = str(e).split("WeightsUnpickler error:")[-1].strip().split("\n")[0]
            raise WeightsError(
                f"could not read checkpoint {path} ({reason}): the file is truncated or corrupted, or not a "
                f"checkpoint; {fix or _REDOWNLOAD}."
            ) from e
        # the weights-only unpickler refused an object: name it, and never advise turning the check off
        raise WeightsError(
            f"refused to load {path}: besides tensors it asks to load {found.group(1)}, which a checkpoint does not "
            f"need and which could run code; nothing in it was executed. To go on, {fix or _RESAVE}."
        ) from e
    except Exception as e:  # truncated zip, bad header, an empty file, not a checkpoint at all
        raise WeightsError(
            f"could not read checkpoint {path} ({type(e).__name__}: {e}). The file may be truncated or corrupted, "
            f"or not a checkpoint; {fix or _REDOWNLOAD}."
        ) from e

def find_weights_file(directory: str) -> str:
    d = Path(directory)
    for name in PREFERRED_FILES:
        if (d / name).is_file():
            return str(d / name)
    for pattern in ("*.safetensors", "*.pth", "*.pt", "*.bin"):
        found = sorted(d.glob(pattern))
        if found:
            return str(found[0])
    raise WeightsError(
        f"no weights file in {directory} (looked for {', '.join(PREFERRED_FILES)}, *.safetensors, *.pth)"
    )

def read_config_json(directory: str) -> Dict[str, Any]:
    path = Path(directory) / "config.json"
    if not path.is_file():
        if not Path(directory).is_dir():
            raise WeightsError(
                f"{directory}: no such folder (local-dir: names a folder written by save_pretrained or finetune)"
            )
        raise WeightsError(f"{directory} has no config.json; write one with r21d_zoo.save_pretrained(model, dir)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path} is not valid JSON ({e}); write the folder again with save_pretrained") from e
    if not isinstance(config, dict) or not isinstance(config.get("pretrained_cfg", {}), dict):
        raise WeightsError(f"{path} must hold a JSON object with a 'pretrained_cfg' object (timm's config.json)")
    if not isinstance(config.get("model_args") or {}, dict):
        raise WeightsError(f"{path}: 'model_args' must be a JSON object, found {config['model_args']!r}")
    return config

def model_config(model: nn.Module, weights_loaded: Optional[bool] = None) -> Dict[str, Any]:
    """timm's nested config.json: architecture, num_classes, num_features, model_args, pretrained_cfg, label_names,
    and the Hub's ``id2label``/``label2id`` beside them (what tools that read Hub configs look for).

    Label names that do not fit the model's head (e.g. after ``reset_classifier``) are dropped. A model built
    without loading weights (``pretrained=False``) keeps timm's convention in memory (its cfg describes the weights it
    would load), but is saved as what it is: no tag, source, results or licence of those weights.
    ``weights_loaded=True`` describes the weights the cfg names whatever the model holds (the registry's cards)."""
    cfg = PretrainedCfg.from_dict(getattr(model, "pretrained_cfg", None) or {})
    loaded = getattr(model, "_weights_loaded", True) if weights_loaded is None else weights_loaded
    if not loaded and (cfg.has_weights or cfg.license or cfg.tag):
        notes = "Randomly initialised: no weights loaded."
        cfg = cfg.derive(base_model=None, labels=cfg.label_names, origin_url=None, notes=notes)
    cfg = cfg.replace(file=None, num_classes=model.num_classes)
    names = cfg.label_names
    if names is not None and len(names) != model.num_classes:
        cfg, names = cfg.replace(labels=None, label_set=None), None
    pretrained_cfg = cfg.to_dict()
    pretrained_cfg.pop("label_names")
    return dict(
        architecture=cfg.architecture,
        num_classes=model.num_classes,
        num_features=model.num_features,
        global_pool=getattr(model, "global_pool", "avg"),
        label_names=list(names) if names else None,
        **(dict(id2label={str(i): n for i, n in enumerate(names)}, label2id={n: i for i, n in enumerate(names)})
           if names else {}),
        model_args=dict(getattr(model, "_model_args", {}), num_classes=model.num_classes),
        pretrained_cfg=pretrained_cfg,
    )


def config_label_names(config: Dict[str, Any]) -> Optional[List[str]]:
    """A config.json's class names: ``label_names``, else the Hub's ``id2label`` (``"0"``.. keys); both given and
    different is an error naming the first class where they differ."""
    names = config.get("label_names")
    id2label = config.get("id2label")
    if id2label is None:
        return names
    try:
        from_ids = [str(id2label[str(i)]) for i in range(len(id2label))]
    except (KeyError, TypeError):
        raise WeightsError(f"config.json: id2label must map '0'..'{len(id2label) - 1}' to names, got {id2label}")
    if names is not None and list(names) != from_ids:
        i = next((i for i, (a, b) in enumerate(zip(names, from_ids)) if a != b), min(len(names), len(from_ids)))
        raise WeightsError(
            f"config.json: label_names and id2label disagree at class {i} "
            f"({names[i] if i < len(names) else None!r} vs {from_ids[i] if i < len(from_ids) else None!r}); "
            "make them name the same classes"
        )
    return from_ids

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """A digest of the model's state dict (names and values): which weights made an output."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def is_unchanged(path: Path, size: Optional[str], mtime_ns: Optional[str], sha256: Optional[str]) -> bool:
    """Whether ``path`` is the file recorded as (size, mtime_ns, sha256): its size and mtime stand in for the hash
    while they are unchanged, so an untouched file is not read again."""
    stat = path.stat()
    if size == str(stat.st_size) and mtime_ns == str(stat.st_mtime_ns):
        return True
    return sha256 is not None and sha256 == sha256_file(str(path))

def _crc(state_dict: Dict[str, torch.Tensor]) -> str:
    """A checksum of every tensor's bytes (detects a damaged cache file; not a defence against tampering)."""
    crc = 0
    for key in sorted(state_dict):
        crc = zlib.crc32(key.encode(), crc)
        crc = zlib.crc32(memoryview(state_dict[key].contiguous().reshape(-1).view(torch.uint8).numpy()), crc)
    return f"{crc:08x}"

def converted_caffe2(path: str, model: nn.Module) -> Dict[str, torch.Tensor]:
    """A downloaded caffe2 ``.pkl`` converted once: the state dict is cached beside it as safetensors, keyed by the
    pickle's sha256 and :data:`CONVERTER_VERSION`, and reused while both match and its checksum holds; a stale or
    damaged cache entry is rebuilt. (The pickle's size and mtime stand in for its sha256 while they are unchanged.)"""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    pkl = Path(path)
    stat = pkl.stat()
    cache = pkl.with_name(f"{pkl.name}.converted-v{CONVERTER_VERSION}.safetensors")
    if cache.is_file():
        try:
            with safe_open(str(cache), "pt") as f:
                meta = f.metadata() or {}
            if is_unchanged(pkl, meta.get("pickle_size"), meta.get("pickle_mtime_ns"), meta.get("pickle_sha256")):
                state_dict = load_file(str(cache), device="cpu")
                if meta.get("crc32") == _crc(state_dict):
                    return state_dict
            _logger.warning("%s does not match %s (stale or damaged): converting again", cache.name, pkl.name)
        except Exception as e:  # a truncated or garbled cache file
            _logger.warning("unreadable conversion cache %s (%s): converting again", cache, e)
    state_dict = read_state_dict(str(pkl), model)
    meta = dict(
        pickle_sha256=sha256_file(str(pkl)),
        pickle_size=str(stat.st_size),
        pickle_mtime_ns=str(stat.st_mtime_ns),
        converter_version=str(CONVERTER_VERSION),
        crc32=_crc(state_dict),
    )
    try:
        atomic_write(cache, lambda f: f.write(save(state_dict, metadata=meta)))
    except OSError as e:  # a read-only cache: still usable, just converted every time
        _logger.warning("could not cache the conversion of %s (%s)", pkl, e)
    return state_dict
