"""``r21d-zoo explain``: space-time Grad-CAM of one clip (see :mod:`r21d_zoo.infer.gradcam`), written as a GIF, the
frames' importance and a JSON record."""

from pathlib import Path

from .._io import writable_dir
from ..train.distributed import default_device, world_info_from_env
from .configs import ExplainJobConfig as ExplainJobConfig
from ..infer.gradcam import check_layer, explain, write_explanation
from ..infer.config import RANDOM_SEED


def run(cfg: ExplainJobConfig) -> int:
    device = default_device(world_info_from_env(), cfg.device)  # this rank's GPU, else the CPU
    out = writable_dir(cfg.out)
    model = cfg.model.create(seed=RANDOM_SEED)
    if cfg.model.random:
        print(f"[explain] {cfg.model.name} has RANDOM weights (--random-weights): the explanation is meaningless")
    check_layer(model, cfg.layer)
    e = explain(model, cfg.video, cfg.start, cfg.target, cfg.layer, cfg.clip, cfg.decoder, device)
    paths = write_explanation(e, out, Path(cfg.video).stem)
    print(f"{cfg.video} @ {cfg.start:.2f}s: {e.cam.summary(e.label, e.times)} -> {', '.join(str(p) for p in paths)}")
    return 0
