"""``r21d-zoo explain`` and :func:`grad_cam`: why the model thinks so, as space-time Grad-CAM.

Grad-CAM (Selvaraju et al., ICCV 2017) in 3D: the gradient of a class's logit with respect to a stage's feature map
(C, T', H', W'), averaged over time and space, weights the map's channels; the ReLU of the weighted sum is upsampled
(trilinearly) to the clip's (T, H, W) and scaled to [0, 1]. Every architecture here is a :class:`VideoResNet`, so any
stage of ``feature_info`` (``stem``, ``layer1``-``layer4``, or its index) works for R(2+1)D, R3D, MC/rMC and CSN alike;
deeper stages are coarser (``layer4`` of a 112-pixel crop is 7x7 over T/8), ``layer3`` is twice as fine. A flow model is
explained over its flow input and drawn on the RGB frames the flow was computed from.

Outputs (``-o OUT``): ``NAME.gradcam.gif`` (the heatmap over the frames the model saw: resized and centre-cropped),
``NAME.importance.csv`` and ``NAME.importance.png`` (each frame's share of the heat, over time) and
``NAME.gradcam.json`` (class, score, layer, clip start).
"""

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
