"""Where weights come from: local files, the Hugging Face Hub, hash-checked URLs, caffe2 pickles; strict loading;
and the ``config.json`` that describes a model (written by ``r21d_zoo.save_pretrained``, read by ``create_model``).

Security: ``.pth`` files are only read with ``torch.load(weights_only=True)``; caffe2 pickles go through the restricted
unpickler in :mod:`r21d_zoo.models._caffe2`.
"""

import contextlib
import hashlib
import http.client
import json
import logging
import os
import pickle
import re
import socket
import sys
import time
import urllib.error
import uuid
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote, urlparse

import torch
import torch.nn as nn

from .._io import atomic_write
from .._progress import watch_file
from .._version import __version__
from ._caffe2 import CONVERTER_VERSION, Caffe2ConversionError, caffe2_to_state_dict, load_caffe2_pickle
from ._ports import KEY_FORMATS, detect_key_format
from ._pretrained import PretrainedCfg

_logger = logging.getLogger(__name__)

# Preference order for weight files in a local directory or hub repo (timm's rule: safetensors first).
PREFERRED_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
OFFLINE_HINT = (
    "If this machine is offline: download the file elsewhere and pass checkpoint_path=<file> (a .safetensors, .pth or "
    "caffe2 .pkl), or use create_model('local-dir:<dir>'); pre-populate the Hugging Face cache (HF_HUB_CACHE, "
    "HF_HOME) or the torch hub cache (TORCH_HOME, default ~/.cache/torch) and set HF_HUB_OFFLINE=1."
)


class WeightsError(RuntimeError):
    """A weight file could not be found, fetched, verified or matched to the model."""


# ------------------------------------------------------------------------------------------------------------------
# Reading files
# ------------------------------------------------------------------------------------------------------------------


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
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p), device="cpu")
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found:  # not a refused object: garbage, or a truncated pickle (torch's advice is not repeated)
            reason = str(e).split("WeightsUnpickler error:")[-1].strip().split("\n")[0]
            raise WeightsError(
                f"could not read checkpoint {path} ({reason}): the file is truncated or corrupted, or not a weights "
                f"file; delete it and download it again."
            ) from e
        # the weights-only unpickler refused an object: name it, and never advise turning the check off
        raise WeightsError(
            f"refused to load {path}: besides tensors it asks to load {found.group(1)}, which a weights file does not "
            f"need and which could run code; nothing in it was executed. Use a .safetensors file of the weights, or "
            f"re-save only the state dict (tensors) on a machine where the file's origin is trusted."
        ) from e
    except Exception as e:  # truncated zip, bad header, not a checkpoint at all
        raise WeightsError(
            f"could not read checkpoint {path} ({type(e).__name__}: {e}). The file may be truncated or corrupted, "
            f"or not a weights file; delete it and download it again."
        ) from e
    return _unwrap(obj, str(p))


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


# ------------------------------------------------------------------------------------------------------------------
# Downloading
# ------------------------------------------------------------------------------------------------------------------


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


def is_unchanged(path: Path, size: Optional[str], mtime_ns: Optional[str], sha256: Optional[str]) -> bool:
    """Whether ``path`` is the file recorded as (size, mtime_ns, sha256): its size and mtime stand in for the hash
    while they are unchanged, so an untouched file is not read again."""
    stat = path.stat()
    if size == str(stat.st_size) and mtime_ns == str(stat.st_mtime_ns):
        return True
    return sha256 is not None and sha256 == sha256_file(str(path))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def url_filename(url: str) -> str:
    return unquote(os.path.basename(urlparse(url).path))


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def is_offline() -> bool:
    """``HF_HUB_OFFLINE=1`` or ``R21D_ZOO_OFFLINE=1``: no network at all, caches only."""
    return _env_flag("HF_HUB_OFFLINE") or _env_flag("R21D_ZOO_OFFLINE")


def download_timeout() -> float:
    """Seconds a connection may wait to connect or for the next bytes (``R21D_ZOO_TIMEOUT``, default 30)."""
    return float(os.environ.get("R21D_ZOO_TIMEOUT", "30"))


def download_retries() -> int:
    """Further attempts after a failed download (``R21D_ZOO_RETRIES``, default 2)."""
    return int(os.environ.get("R21D_ZOO_RETRIES", "2"))


class DownloadError(OSError):
    """A file could not be fetched (offline, unreachable, stalled); the message lists every attempt."""


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """torch.hub's downloader opens URLs with the socket default timeout (none unless set): bound it."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _remove_partials(directory: Path, pid: Optional[int] = None) -> None:
    """Temp files of downloads (``.download-<pid>-*``, torch's ``*.partial`` beside them): those of ``pid``, or of
    processes that no longer run (a run killed with SIGKILL cannot clean up after itself)."""
    for f in directory.glob(".download-*"):
        owner = f.name.split("-")[1]
        if not owner.isdigit():
            continue
        if pid is not None:
            dead = int(owner) == pid
        else:
            try:
                os.kill(int(owner), 0)
                dead = False
            except ProcessLookupError:
                dead = True
            except PermissionError:  # another user's live process
                dead = False
        if dead:
            f.unlink(missing_ok=True)


def cached_path(url: str, cache_dir: Optional[str] = None) -> Path:
    """Where :func:`download_url` keeps ``url``: ``cache_dir`` or ``$TORCH_HOME/hub/checkpoints``."""
    directory = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / "checkpoints"
    return directory / url_filename(url)


def verification_path(path: str) -> Path:
    """The record ``r21d-zoo verify-weights`` keeps beside a downloaded file it compared with the original."""
    return Path(f"{path}.verified.json")


def write_verification(path: str, record: Dict[str, Any]) -> None:
    """Record a comparison of ``path`` with the original weights (``ok``, differences), keyed by the file's sha256."""
    stat = Path(path).stat()
    record = dict(
        record, sha256=sha256_file(path), size=str(stat.st_size), mtime_ns=str(stat.st_mtime_ns), r21d_zoo=__version__
    )
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write(verification_path(path), lambda f: f.write(text.encode()))


def verified_mirror(url: str, cache_dir: Optional[str] = None) -> Tuple[Optional[str], str]:
    """A mirror without a hash is used only when it is cached and verify-weights matched that very file to the
    original. Returns (path, "") or (None, why not)."""
    path = cached_path(url, cache_dir)
    record_path = verification_path(str(path))
    if not path.is_file() or not record_path.is_file():
        return None, "a mirror without a published hash, not yet checked against the original"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if not is_unchanged(path, record.get("size"), record.get("mtime_ns"), record.get("sha256")):
        return None, f"{path} changed since it was checked against the original"
    if not record.get("ok"):
        return None, f"its outputs differ from the original's ({record.get('summary', 'see ' + str(record_path))})"
    return str(path), ""


def download_url(
    url: str, hash_prefix: Optional[str] = None, cache_dir: Optional[str] = None, progress: bool = True
) -> str:
    """Download ``url`` into the torch hub cache (``$TORCH_HOME/hub/checkpoints``) once, with torch's downloader
    checking the sha256 prefix while it streams.

    Each attempt has a connect/read timeout (``R21D_ZOO_TIMEOUT``) and failed attempts are retried
    (``R21D_ZOO_RETRIES``); the error lists them all. The transfer goes to a temp file that is renamed only when
    complete and verified, so no failure, interrupt or kill leaves a file in the cache (a killed run's temp files are
    removed by the next download). Offline (:func:`is_offline`) nothing is fetched.
    """
    dst = cached_path(url, cache_dir)
    directory = dst.parent
    if dst.is_file():
        return str(dst)
    if is_offline():
        raise DownloadError(
            f"not downloaded: offline mode (HF_HUB_OFFLINE / R21D_ZOO_OFFLINE), and {dst} is not cached"
        )
    directory.mkdir(parents=True, exist_ok=True)
    _remove_partials(directory)
    timeout, attempts = download_timeout(), []
    for attempt in range(1 + download_retries()):
        tmp = directory / f".download-{os.getpid()}-{uuid.uuid4().hex}.part"
        try:
            with _socket_timeout(timeout), watch_file(tmp, f"download {dst.name}", show=progress):
                torch.hub.download_url_to_file(
                    url, str(tmp), hash_prefix=hash_prefix, progress=progress and sys.stderr.isatty()
                )
            os.replace(tmp, dst)
            return str(dst)
        except RuntimeError as e:  # torch's hash check
            raise WeightsError(
                f"hash mismatch for {url}: expected sha256 starting with {hash_prefix} ({e}); the download is "
                f"corrupted or the file changed upstream; nothing was cached."
            ) from e
        except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError, timeouts, resets
            attempts.append(f"attempt {attempt + 1}: {type(e).__name__}: {getattr(e, 'reason', None) or e}")
            if (
                isinstance(e, urllib.error.HTTPError)
                and 400 <= e.code < 500
                or isinstance(getattr(e, "reason", None), socket.gaierror)
            ):
                break  # not found / forbidden / unknown host: asking again will not help
            if attempt < download_retries():
                time.sleep(min(2.0**attempt, 5.0))
        finally:
            _remove_partials(directory, os.getpid())
    raise DownloadError(
        f"{len(attempts)} attempt(s), each with a {timeout:g} s timeout (R21D_ZOO_TIMEOUT; retries: R21D_ZOO_RETRIES): "
        + "; ".join(attempts)
    )


def hf_download(repo_id: str, filename: str, revision: Optional[str] = None, cache_dir: Optional[str] = None) -> str:
    """One file from the Hub (honours HF_HUB_OFFLINE / HF_HUB_CACHE); the single place this package calls the Hub.
    ``R21D_ZOO_OFFLINE=1`` keeps it to the cache too."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(
        repo_id,
        filename,
        revision=revision,
        cache_dir=cache_dir,
        library_name="r21d_zoo",
        library_version=__version__,
        etag_timeout=download_timeout(),
        local_files_only=is_offline(),
    )


def split_repo_revision(repo: str) -> Tuple[str, Optional[str]]:
    repo_id, _, revision = repo.partition("@")
    return repo_id, revision or None


# ------------------------------------------------------------------------------------------------------------------
# Resolving a pretrained cfg to a state dict
# ------------------------------------------------------------------------------------------------------------------


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
            return read_state_dict(path, model), f"hf-hub:{cfg.hf_hub_id} ({path})"
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
            return converted_caffe2(path, model), f"{src['url']} ({path})"
        return read_state_dict(path, model), f"{src['url']} ({path})"
    if not attempts:
        raise WeightsError(f"{cfg.name} has no weights (no checkpoint_path, file, hf_hub_id or url).")
    raise WeightsError(f"could not fetch weights for {cfg.name}:\n  " + "\n  ".join(attempts) + "\n" + OFFLINE_HINT)


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """Adapt an RGB first-conv weight (O, 3, kT, kH, kW) to ``in_chans`` inputs, as timm does for 2D stems.

    1 channel: sum over RGB. Otherwise the RGB filters are tiled and rescaled by 3 / in_chans, so a constant input
    gives the same activation.
    """
    dtype = weight.dtype
    weight = weight.float()
    o, i = weight.shape[:2]
    if i != 3:
        raise WeightsError(f"can only adapt a 3-channel first conv, this one has {i} input channels")
    if in_chans == 1:
        weight = weight.sum(dim=1, keepdim=True)
    else:
        repeat = -(-in_chans // 3)
        weight = weight.repeat(1, repeat, *([1] * (weight.dim() - 2)))[:, :in_chans] * (3 / in_chans)
    return weight.to(dtype)


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


def load_into_model(
    model: nn.Module,
    state_dict: Dict[str, torch.Tensor],
    cfg: PretrainedCfg,
    origin: str,
    num_classes_requested: bool,
    check_cfg_classes: bool = True,
) -> None:
    """Load strictly. Only when the user asked for another ``num_classes`` is the classifier left out, and then
    exactly the classifier keys may be missing."""
    fc_w, fc_b = f"{cfg.classifier}.weight", f"{cfg.classifier}.bias"
    state_dict = dict(state_dict)
    file_classes = state_dict[fc_w].shape[0] if fc_w in state_dict else None
    if (
        check_cfg_classes
        and file_classes is not None
        and cfg.num_classes is not None
        and file_classes != cfg.num_classes
    ):
        raise WeightsError(
            f"{origin} has a {file_classes}-class classifier but {cfg.name} expects {cfg.num_classes} classes: "
            f"wrong file for this tag."
        )
    first = f"{cfg.first_conv}.weight"
    own = model.state_dict()
    if first in state_dict and first in own and state_dict[first].shape[1] != own[first].shape[1]:
        state_dict[first] = adapt_input_conv(own[first].shape[1], state_dict[first])
    model_classes = getattr(model, "num_classes", None)
    if file_classes is None and model_classes and not num_classes_requested:
        raise WeightsError(
            f"{origin} holds a backbone only (no {fc_w}): pass num_classes=N to train a new head on it, or 0 for "
            f"features."
        )
    if model_classes != file_classes and (file_classes is not None or num_classes_requested):
        if not num_classes_requested:
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


# ------------------------------------------------------------------------------------------------------------------
# config.json
# ------------------------------------------------------------------------------------------------------------------


def model_config(model: nn.Module) -> Dict[str, Any]:
    """timm's nested config.json: architecture, num_classes, num_features, model_args, pretrained_cfg, label_names.

    Label names that do not fit the model's head (e.g. after ``reset_classifier``) are dropped."""
    cfg = PretrainedCfg.from_dict(getattr(model, "pretrained_cfg", None) or {})
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
        model_args=dict(getattr(model, "_model_args", {}), num_classes=model.num_classes),
        pretrained_cfg=pretrained_cfg,
    )
