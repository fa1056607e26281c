"""``r21d-zoo explain``: space-time Grad-CAM of one clip (see :mod:`r21d_zoo.infer.gradcam`), written as a GIF, the
frames' importance and a JSON record."""

from pathlib import Path

import numpy as np

from .._io import writable_dir
from ..train.distributed import default_device, world_info_from_env
from .configs import ExplainJobConfig as ExplainJobConfig
from ..infer.gradcam import check_layer, explain, write_explanation


def run(cfg: ExplainJobConfig) -> int:
    device = default_device(world_info_from_env(), cfg.device)  # this rank's GPU, else the CPU
    out = writable_dir(cfg.out)
    model = cfg.model.create()
    if cfg.model.random:
        print(f"[explain] {cfg.model.name} has RANDOM weights (--random-weights): the explanation is meaningless")
    check_layer(model, cfg.layer)
    e = explain(model, cfg.video, cfg.start, cfg.target, cfg.layer, cfg.clip, cfg.decoder, device)
    paths = write_explanation(e, out, Path(cfg.video).stem)
    peak = int(np.argmax(e.cam.frame_importance))
    print(f"{cfg.video} @ {cfg.start:.2f}s: {e.label} ({e.cam.score:.3f}) at {e.cam.layer}; most important frame "
          f"{peak} ({e.times[peak]:.2f}s) -> {', '.join(str(p) for p in paths)}")
    return 0
