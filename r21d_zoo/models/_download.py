"""Fetching weights: hash-checked URL downloads with timeouts, retries and partial-file cleanup; the records that let
an unhashed mirror be trusted once ``r21d-zoo verify-weights`` matched it to the original; Hugging Face Hub files."""

import contextlib
import http.client
import json
import logging
import os
import socket
import sys
import time
import urllib.error
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple
from urllib.parse import unquote, urlparse

import torch

from .._io import atomic_write
from .._progress import watch_file
from .._version import __version__
from ._files import WeightsError, is_unchanged, sha256_file

_logger = logging.getLogger(__name__)


OFFLINE_HINT = (
    "If this machine is offline: download the file elsewhere and pass checkpoint_path=<file> (a .safetensors, .pth or "
    "caffe2 .pkl), or use create_model('local-dir:<dir>'); pre-populate the Hugging Face cache (HF_HUB_CACHE, "
    "HF_HOME) or the torch hub cache (TORCH_HOME, default ~/.cache/torch) and set HF_HUB_OFFLINE=1."
)


def url_filename(url: str) -> str:
    return unquote(os.path.basename(urlparse(url).path))

def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")

def is_offline() -> bool:
    """``HF_HUB_OFFLINE=1`` or ``R21D_ZOO_OFFLINE=1``: no network at all, caches only."""
    return _env_flag("HF_HUB_OFFLINE") or _env_flag("R21D_ZOO_OFFLINE")

def download_timeout() -> float:
    """Seconds one source may keep a download waiting in all: connecting, waiting for the next bytes and retrying
    (``R21D_ZOO_TIMEOUT``, default 30). A transfer that keeps receiving is never cut; a stalled source is abandoned
    within this, and a weight with N sources within N times this."""
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

    Waiting (connecting, stalls between bytes, failed attempts and the pauses between them) is bounded by one
    deadline, :func:`download_timeout`; failed attempts are retried (``R21D_ZOO_RETRIES``) while it has time left,
    and the error lists them all. The transfer goes to a temp file that is renamed only when
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
    deadline = time.monotonic() + timeout
    for attempt in range(1 + download_retries()):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        tmp = directory / f".download-{os.getpid()}-{uuid.uuid4().hex}.part"
        try:
            with _socket_timeout(left), watch_file(tmp, f"download {dst.name}", show=progress):
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
                time.sleep(max(0.0, min(2.0**attempt, 5.0, deadline - time.monotonic())))
        finally:
            _remove_partials(directory, os.getpid())
    raise DownloadError(
        f"{len(attempts)} attempt(s) within {timeout:g} s in all (R21D_ZOO_TIMEOUT; retries: R21D_ZOO_RETRIES): "
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
