"""``save_pretrained`` / ``push_to_hub``: a model as ``model.safetensors`` + ``config.json`` + ``README.md`` (its card),
the folder layout that ``create_model("local-dir:...")`` and ``create_model("hf-hub:...")`` read."""

import json
import tempfile
from pathlib import Path
from typing import Optional

import torch.nn as nn

from .._io import atomic_write
from .._version import __version__
from ..models import model_config
from .cards import render_model_card


def save_pretrained(model: nn.Module, save_directory: str, model_card: Optional[str] = None) -> str:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` (a model card) to ``save_directory``.

    ``create_model('local-dir:<dir>')`` rebuilds the same model and ``from_pretrained`` reloads it.
    """
    from safetensors.torch import save

    model = getattr(model, "module", model)  # DDP
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    config = model_config(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out / "model.safetensors", lambda f: f.write(save(tensors, metadata={"format": "pt"})))
    atomic_write(out / "config.json", lambda f: f.write((json.dumps(config, indent=2, sort_keys=True) + "\n").encode()))
    card = render_model_card(config) if model_card is None else model_card
    atomic_write(out / "README.md", lambda f: f.write(card.encode("utf-8")))
    return str(out)


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    commit_message: str = "Add r21d_zoo weights",
    revision: Optional[str] = None,
) -> str:
    """Create (if needed) ``repo_id`` and upload ``save_pretrained``'s files in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token, library_name="r21d_zoo", library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision)
    return str(getattr(info, "commit_url", info))
