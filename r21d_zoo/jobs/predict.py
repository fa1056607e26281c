"""``r21d-zoo predict``: the videos' answers (see :mod:`r21d_zoo.infer.timeline`), written per video, with
Grad-CAM of the top class on request (``--explain``)."""

import logging
from pathlib import Path


from .._errors import EXIT_PARTIAL, InputError
from .._io import writable_dir
from ..data.inputs import discover_videos
from ..video import VideoDecodeError
from ..video.reader import FRAMES_DECODER
from ..train.distributed import default_device, world_info_from_env
from .configs import PredictJobConfig as PredictJobConfig
from ..infer.config import RANDOM_SEED, ModelSource
from ..infer.gradcam import check_layer, write_explanation
from ..infer.timeline import explain_top, predict, write_outputs

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# The command


def run(cfg: PredictJobConfig) -> int:
    """``r21d-zoo predict``: exit 1 when a video failed (the others are done), 3 when nothing can be read."""
    device = default_device(world_info_from_env(), cfg.device)  # this rank's GPU, else the CPU
    videos = discover_videos(cfg.inputs, cfg.extensions.split(","), cfg.decoder == FRAMES_DECODER)
    if not videos:
        raise InputError(f"no videos found in {' '.join(cfg.inputs) or '(no inputs given)'}")
    if cfg.out:
        writable_dir(cfg.out)
    model = cfg.model.create(seed=RANDOM_SEED)
    if cfg.explain:
        check_layer(model, cfg.layer)
    flow_model = ModelSource(cfg.flow_model, cfg.model.pretrained).create(seed=RANDOM_SEED) if cfg.flow_model else None
    if cfg.model.random:
        print(f"[predict] {cfg.model.name} has RANDOM weights (--random-weights): the labels are meaningless")
    failed = 0
    for v in videos:
        try:
            p = predict(model, v.path, cfg.settings, flow_model=flow_model, flow_weight=cfg.fusion_weight,
                        device=device, decoder=cfg.decoder, frames_fps=cfg.frames_fps, progress=True)
        except VideoDecodeError as e:
            failed += 1
            _logger.warning("failed: %s", e)
            print(f"{v.path}: FAILED: {e}")
            continue
        p.settings = dict(model=cfg.model.name, pretrained=not cfg.model.random, **p.settings)
        top = ", ".join(f"{c['label']} {c['score']:.3f}" for c in p.predictions)
        print(f"{v.path}: {top}  ({len(p.timeline)} windows)")
        if cfg.out:
            write_outputs(p, Path(cfg.out), v.name, cfg.output_kinds, cfg.plot, cfg.annotate)
        if cfg.explain:
            e = explain_top(model, p, cfg.layer, cfg.settings.clip, cfg.decoder, device)
            write_explanation(e, Path(cfg.out), v.name)
            print(f"{v.path}: Grad-CAM of {e.cam.summary(e.label, e.times)}")
    return EXIT_PARTIAL if failed else 0
