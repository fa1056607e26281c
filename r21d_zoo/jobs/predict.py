"""``r21d-zoo predict``: the videos' answers (see :mod:`r21d_zoo.infer.timeline`), written per video, with
Grad-CAM of the top class on request (``--explain``)."""

import logging
import signal
import threading
from pathlib import Path


from .._errors import EXIT_PARTIAL, InputError
from .._io import interrupt_after, writable_dir
from ..data.inputs import discover_videos
from ..video import VideoDecodeError
from ..video.reader import FRAMES_DECODER
from ..train.distributed import default_device, world_info_from_env
from .configs import PredictJobConfig as PredictJobConfig
from ..infer.config import RANDOM_SEED, ModelSource
from ..infer.gradcam import check_layer, write_explanation
from ..infer.config import InferenceOptions
from ..infer.live import LiveOutputs, LiveSummary, live_windows, plot_live
from ..infer.timeline import Predictor, explain_top, write_outputs
from ..video.live import check_live_source

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# The command


def run(cfg: PredictJobConfig) -> int:
    """``r21d-zoo predict``: exit 1 when a video failed (the others are done), 3 when nothing can be read."""
    device = default_device(world_info_from_env(), cfg.device)  # this rank's GPU, else the CPU
    if cfg.live is not None:
        return run_live(cfg, device)
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
    predictor = Predictor(model, cfg.settings, flow_model=flow_model, flow_weight=cfg.fusion_weight,
                          inference=InferenceOptions(device=device, runtime=cfg.runtime))  # fmt: skip
    for v in videos:
        try:
            p = predictor(v.path, cfg.decoder, cfg.frames_fps, progress=True)
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


def run_live(cfg: PredictJobConfig, device: str) -> int:
    """``predict --live``: each window printed and appended to ``OUT/live.{jsonl,srt,vtt}`` as it is classified
    (with ``--plot``, ``OUT/live.png`` drawn from ``live.jsonl`` on SIGUSR1 and at the end), until the source ends or
    Ctrl-C; a summary last. Exit 0 at the end of the stream, 1 when a network source was lost after its reconnect
    attempts, 130 on Ctrl-C."""
    check_live_source(cfg.live)
    if cfg.out:
        writable_dir(cfg.out)
    model = cfg.model.create(seed=RANDOM_SEED)
    if cfg.model.random:
        print(f"[predict] {cfg.model.name} has RANDOM weights (--random-weights): the labels are meaningless")
    kinds = [{"json": "jsonl"}.get(k, k) for k in cfg.output_kinds]
    kinds += ["jsonl"] if cfg.plot else []  # the plot is drawn from it
    outputs = LiveOutputs(Path(cfg.out), "live", kinds, cfg.settings.stride_sec) if cfg.out else None
    redraw = _redraw_on_sigusr1() if cfg.plot else None
    summary, code = LiveSummary(), 0
    inference = InferenceOptions(device=device, runtime=cfg.runtime)
    windows = live_windows(model, cfg.live, cfg.settings, inference=inference, reconnect=cfg.reconnect, summary=summary)
    try:
        for w in windows:
            if outputs is not None:  # in the files first: a window printed is a window kept
                with interrupt_after():  # a Ctrl-C lands after the window is in every file
                    outputs.add(w)
            top = ", ".join(f"{p['label']} {p['score']:.3f}" for p in w.predictions)
            skipped = f", {w.skipped} skipped before" if w.skipped else ""
            print(f"[{w.start:8.2f}-{w.end:8.2f} s] {top}  (latency {w.latency:.3f} s{skipped})", flush=True)
            if redraw is not None and redraw.is_set():
                redraw.clear()
                plot_live(Path(cfg.out) / "live.jsonl", Path(cfg.out) / "live.png")
    except KeyboardInterrupt:
        code = 130
    finally:
        windows.close()  # stops the source's reading thread
    if summary.lost:
        code = code or EXIT_PARTIAL
    if code == 130:
        summary.ended = "interrupted (Ctrl-C)"
    if cfg.plot and summary.windows:
        plot_live(Path(cfg.out) / "live.jsonl", Path(cfg.out) / "live.png")
    print(f"[predict --live] {summary.line()}")
    return code


def _redraw_on_sigusr1() -> threading.Event:
    """An event set by ``kill -USR1`` (where the platform has it): redraw the plot after the next window."""
    event = threading.Event()
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, lambda *_: event.set())
    return event
