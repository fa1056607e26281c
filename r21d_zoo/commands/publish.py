"""``r21d-zoo publish`` (maintainers): each weight tag converted once to ``model.safetensors`` + ``config.json`` + its
model card and pushed as one Hugging Face Hub repo, timm's convention ``ORG/arch.tag``. ``--dry-run DIR`` writes the
folders to ``DIR/ORG/arch.tag`` instead; they load with ``create_model("local-dir:...")`` and, laid out as a Hub
cache, with ``create_model("hf-hub:ORG/arch.tag")`` offline. A pushed tag enters the registry (``PUBLISHED_ON_HUB``
in its family module) by hand, once its repo is public.
"""

import logging
from pathlib import Path
from typing import Optional

from .._version import __version__
from ..models import HF_HUB_ORG, create_model, list_pretrained, resolve_model_name
from ..deploy import push_to_hub, save_pretrained
from .._errors import EXIT_PARTIAL
from .configs import PublishConfig as PublishConfig

_logger = logging.getLogger("r21d_zoo.progress")


def publish_tag(
    name: str,
    org: str = HF_HUB_ORG,
    dry_run: Optional[str] = None,
    private: bool = False,
    cache_dir: Optional[str] = None,
) -> str:
    """Fetch and convert one tag, then push it to ``org/name`` (or write it under ``dry_run``); returns the commit
    URL or the folder. The config records the repo id, so the copy names itself as its source."""
    name = resolve_model_name(name)
    model = create_model(name, pretrained=True, cache_dir=cache_dir)
    repo_id = f"{org}/{name}"
    model.pretrained_cfg = dict(model.pretrained_cfg, hf_hub_id=repo_id, hf_hub_revision=None)
    if dry_run:
        return save_pretrained(model, str(Path(dry_run) / org / name))
    return push_to_hub(model, repo_id, private=private, commit_message=f"{name} (r21d_zoo {__version__})")


def run(cfg: PublishConfig) -> int:
    names = [resolve_model_name(t) for t in cfg.tags] or list_pretrained()
    failed = []
    for i, name in enumerate(names, 1):
        _logger.info("publish %d/%d: %s", i, len(names), name)
        try:
            print(f"{cfg.org}/{name}: {publish_tag(name, cfg.org, cfg.dry_run, cfg.private, cfg.cache_dir)}")
        except Exception as e:  # a dead link or a failed upload: recorded, the other tags go on
            failed.append(name)
            print(f"{cfg.org}/{name}: FAILED {type(e).__name__}: {str(e).splitlines()[0]}")
    if not cfg.dry_run and len(failed) < len(names):
        print("Once the repos are public, add their tags to PUBLISHED_ON_HUB (r21d_zoo/models/video_resnet.py).")
    if failed:
        print(f"{len(failed)} of {len(names)} failed: {' '.join(failed)}")
    return EXIT_PARTIAL if failed else 0
