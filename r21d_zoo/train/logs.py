"""Training logs where people look (``--log-to tensorboard wandb``): every record the loop keeps (losses, learning
rate, throughput, validation metrics, per epoch or per evaluation interval) as scalars, and ``curves.png`` as an image.

TensorBoard event files go to ``OUT/tensorboard`` (``tensorboard --logdir OUT``); W&B runs to ``OUT/wandb``, offline
unless ``WANDB_MODE`` says otherwise (``wandb sync OUT/wandb/offline-run-*`` uploads one later), under a run id kept
in ``OUT/wandb-run-id`` so a resumed run continues the same W&B run. Both are optional extras, loaded only when named;
only the primary rank writes.
"""

import io
import os
import uuid
from numbers import Real
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .._errors import InputError

LOG_TARGETS = ("tensorboard", "wandb")
_EXTRA = {"tensorboard": "tensorboard", "wandb": "wandb"}


def _tag(key: str) -> str:
    """``train_loss`` -> ``train/loss``, ``val_video_top1`` -> ``val/video_top1``, ``lr`` -> ``train/lr``."""
    for part in ("train", "val"):
        if key.startswith(part + "_"):
            return f"{part}/{key[len(part) + 1 :]}"
    return f"train/{key}"


class RunLogs:
    """The run's logs in the ``targets`` named (see the module docstring); a missing package is an error before any
    work, naming the extra to install."""

    def __init__(self, out: Path, targets: Sequence[str], config: Optional[Dict[str, Any]] = None):
        unknown = [t for t in targets if t not in LOG_TARGETS]
        if unknown:
            raise ValueError(f"--log-to {' '.join(unknown)}: unknown; choose from {', '.join(LOG_TARGETS)}")
        self.out = Path(out)
        self._tensorboard: Any = None
        self._wandb: Any = None
        try:
            if "tensorboard" in targets:
                from torch.utils.tensorboard import SummaryWriter

                self._tensorboard = SummaryWriter(str(self.out / "tensorboard"))
            if "wandb" in targets:
                import wandb

                self._wandb = wandb.init(
                    dir=str(self.out),
                    project=os.environ.get("WANDB_PROJECT", "r21d-zoo"),
                    name=self.out.name,
                    id=self._wandb_id(),
                    resume="allow",
                    mode=os.environ.get("WANDB_MODE", "offline"),
                    config=config or {},
                )
        except ImportError as e:
            name = "tensorboard" if self._tensorboard is None and "tensorboard" in targets else "wandb"
            raise InputError(
                f"--log-to {name} needs the {name} package ({e}); install it: pip install 'r21d-zoo[{_EXTRA[name]}]'"
            ) from e

    def _wandb_id(self) -> str:
        path = self.out / "wandb-run-id"
        if not path.exists():
            self.out.mkdir(parents=True, exist_ok=True)
            path.write_text(uuid.uuid4().hex[:12] + "\n")
        return path.read_text().strip()

    def record(self, record: Dict[str, Any], step: int) -> None:
        """Every number of one record, at ``step`` (the epoch, or the clips seen)."""
        scalars = {_tag(k): float(v) for k, v in record.items() if isinstance(v, Real) and not isinstance(v, bool)}
        if self._tensorboard is not None:
            for tag, value in scalars.items():
                self._tensorboard.add_scalar(tag, value, step)
            self._tensorboard.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def image(self, name: str, png: Path, step: int) -> None:
        """A picture (``curves.png``) at ``step``."""
        from PIL import Image

        with Image.open(io.BytesIO(png.read_bytes())) as image:
            pixels = np.array(image.convert("RGB"))
        if self._tensorboard is not None:
            self._tensorboard.add_image(name, pixels, step, dataformats="HWC")
            self._tensorboard.flush()
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Image(pixels)}, step=step)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()
