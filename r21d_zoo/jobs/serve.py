"""``r21d-zoo serve``: a web page where a person drops or picks a video and sees what the model answers.

The page (Gradio, the optional ``serve`` extra) shows the video-level top-5 and the timeline plot of
:func:`~r21d_zoo.infer.timeline.predict`, the timeline's JSON/CSV/SRT/WebVTT files to download and, when asked, the
Grad-CAM of the top class on its best window (:func:`~r21d_zoo.infer.timeline.explain_top`). Its heading says which
weights answer, and says plainly when they are random (``--random-weights``, or registry weights that could not be
fetched, as ``demo`` falls back). It uses system fonts, so it renders offline. Each answer's files are written to a
folder of their own under the system's temporary directory (Gradio serves files from there), removed when the server
stops; Gradio's copies of uploads and answers are deleted after an hour.

A second tab classifies the visitor's webcam as it streams (Gradio streaming, a frame every ``LIVE_EVERY`` s): each
browser session has its own :class:`~r21d_zoo.video.live.FrameBuffer` of the frames at their arrival times, and after
each frame the latest ready window is classified (:class:`~r21d_zoo.infer.live.LiveClassifier`, as ``predict
--live``): the current top-5, a rolling timeline of the last windows, and the latency of each answer.
"""

import collections
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch.nn as nn

from .._errors import InputError
from ..data.inputs import discover_videos
from ..video import VideoDecodeError
from ..train.distributed import default_device, world_info_from_env
from .configs import ServeConfig as ServeConfig
from ..infer.config import create_or_fall_back
from ..infer.gradcam import check_layer, write_explanation
from ..infer.config import PredictConfig
from ..infer.timeline import Predictor, explain_top, write_outputs
from ..infer.config import InferenceOptions
from ..infer.live import LiveClassifier
from ..video.live import FrameBuffer

PIP_HINT = "pip install 'r21d-zoo[serve]'"
RANDOM_NOTE = "RANDOM WEIGHTS: this model holds no trained weights, so its labels are meaningless"
LIVE_EVERY = 0.2  # seconds between the webcam frames the page sends
LIVE_ROWS = 10  # windows in the live tab's rolling timeline


def weights_note(name: str, model: nn.Module, trained: bool) -> str:
    """The page's line on the weights: which ones answer, or plainly that they are random."""
    if not trained:
        return f"**{RANDOM_NOTE}** (`{name}`)."
    cfg = getattr(model, "pretrained_cfg", None) or {}
    said = [f"from `{cfg['base_model']}`"] if cfg.get("base_model") else []
    said += [cfg["notes"]] if cfg.get("notes") else []
    return f"Weights: `{name}`" + (f" ({'; '.join(said)})" if said else "") + f", {model.num_classes} classes."


_logger = logging.getLogger(__name__)


class Server:
    """The page's model and settings; :meth:`answer` is what the page's button runs."""

    def __init__(
        self, model: nn.Module, name: str, trained: bool, settings: Optional[PredictConfig] = None,
        layer: str = "layer4", device: Optional[str] = None, examples: Sequence[str] = (), runtime: str = "auto",
    ) -> None:
        check_layer(model, layer)
        self.model, self.name, self.trained = model.eval(), name, trained
        self.settings, self.layer, self.device = settings or PredictConfig(), layer, device
        self.inference = InferenceOptions(device, runtime=runtime)
        self._predictor: Optional[Predictor] = None  # made at the first answer
        self.examples = list(examples)
        self._answers = tempfile.TemporaryDirectory(prefix="r21d-serve-")  # removed with the server
        self._live: Optional[LiveClassifier] = None  # made at the first webcam frame

    def live_frame(self, frame: Optional[np.ndarray], state: Optional[Dict[str, Any]]) -> Tuple[Any, ...]:
        """One webcam frame of a browser session into its buffer, and the answer for its latest ready window: the
        top-5 as ``{label: score}``, the rolling timeline and the latency line (the previous ones while no window is
        ready), and the session's state."""
        if self._live is None:
            self._live = LiveClassifier(self.model, self.settings, self.inference)
        if state is None:
            buffer = FrameBuffer("webcam", self._live.spec, 1.0 / LIVE_EVERY)
            state = dict(buffer=buffer, t0=time.monotonic(), index=0, rows=collections.deque(maxlen=LIVE_ROWS),
                         top={}, latency="Waiting for the first window...", skipped=0)  # fmt: skip
        if frame is not None:
            state["buffer"].add(time.monotonic() - state["t0"], np.ascontiguousarray(frame[..., :3]))
            w = self._live.classify(state["buffer"], state["index"])
            if w is not None:
                state["index"], state["skipped"] = w.index + 1, state["skipped"] + w.skipped
                state["top"] = {p["label"]: p["score"] for p in w.predictions}
                best = w.predictions[0] if w.predictions else dict(label="-", score=0.0)
                state["rows"].appendleft(f"| {w.start:.1f}-{w.end:.1f} s | {best['label']} | {best['score']:.2f} |")
                state["latency"] = (
                    f"Window {w.index + 1}: answered {w.latency:.2f} s after its last frame arrived "
                    f"(the model took {w.model_seconds:.2f} s); {state['skipped']} window(s) skipped to keep up."
                )
        rows = "| window | top class | score |\n|---|---|---|\n" + "\n".join(state["rows"])
        return state["top"], rows, state["latency"], state

    def answer(self, video: Optional[str], want_cam: bool = False) -> Tuple[Dict[str, float], str, Optional[str],
                                                                          List[str], str]:
        """The top-5 as ``{label: score}``, the timeline PNG, the Grad-CAM GIF (when asked), the files to download
        and a line of text, for the video at ``video``."""
        if not video:
            raise InputError("no video: upload one or pick an example first")
        out = Path(tempfile.mkdtemp(dir=self._answers.name))
        name = Path(video).stem
        if self._predictor is None:
            self._predictor = Predictor(self.model, self.settings, inference=self.inference)
        p = self._predictor(video)
        *texts, plot = [str(f) for f in write_outputs(p, out, name, plot=True)]
        gif = None
        if want_cam:
            e = explain_top(self.model, p, self.layer, self.settings.clip, device=self.device)
            gif = str(write_explanation(e, out, name)[0])
        top = {c["label"]: c["score"] for c in p.top(p.video_scores)}
        summary = f"{Path(video).name}: {p.duration:.1f} s, {len(p.timeline)} windows"
        if want_cam and e.cam.no_signal:
            summary += f". Grad-CAM: {e.cam.summary(e.label, e.times)}"
        if not self.trained:
            summary += f". {RANDOM_NOTE}."
        return top, plot, gif, texts, summary

    def build(self) -> Any:
        """The Gradio page (``gr.Blocks``)."""
        gr = _gradio()

        def run(video: Optional[str], want_cam: bool) -> Tuple[Any, ...]:
            try:
                return self.answer(video, want_cam)
            except (InputError, VideoDecodeError) as e:  # the visitor's file: one line here, the message there
                _logger.warning("a visitor's upload was refused: %s", e)
                raise gr.Error(str(e), print_exception=False) from e

        with gr.Blocks(title=f"r21d_zoo: {self.name}", delete_cache=(3600, 3600)) as page:  # uploads kept an hour
            gr.Markdown(f"## What is in this video?\n{weights_note(self.name, self.model, self.trained)}",
                        elem_id="weights")
            with gr.Tab("Video", elem_id="video_tab"):
                self._video_tab(gr, run)
            with gr.Tab("Live (webcam)", elem_id="live_tab"):
                gr.Markdown(f"Your webcam, a frame every {LIVE_EVERY:g} s, classified window by window as it "
                            "streams; a window is answered once its last frame is in.")  # fmt: skip
                with gr.Row():
                    camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                                      elem_id="camera")  # fmt: skip
                    with gr.Column():
                        live_top = gr.Label(num_top_classes=5, label="Now (the latest window)", elem_id="live_top")
                        latency = gr.Markdown(elem_id="live_latency")
                live_rows = gr.Markdown(elem_id="live_timeline")
                session = gr.State(None)
                camera.stream(self.live_frame, inputs=[camera, session],
                              outputs=[live_top, live_rows, latency, session], stream_every=LIVE_EVERY,
                              concurrency_limit=4)  # fmt: skip
        return page

    def _video_tab(self, gr: Any, run: Any) -> None:
        """The first tab: a video uploaded or picked, its top-5, timeline, Grad-CAM and files."""
        with gr.Row():
            with gr.Column():
                video = gr.Video(sources=["upload"], label="Video", elem_id="video")
                want_cam = gr.Checkbox(label="Explain the top class (Grad-CAM)", elem_id="explain")
                button = gr.Button("Predict", variant="primary", elem_id="predict")
                if self.examples:
                    gr.Examples([[v] for v in self.examples], inputs=[video], label="Or pick one")
            with gr.Column():
                summary = gr.Markdown(elem_id="summary")
                top = gr.Label(num_top_classes=5, label="Top-5 (the whole video)", elem_id="top5")
        timeline = gr.Image(type="filepath", label="Timeline: the top classes' scores over time",
                            elem_id="timeline")
        cam = gr.Image(type="filepath", label="Grad-CAM of the top class", elem_id="gradcam")
        files = gr.File(file_count="multiple", label="Timeline as JSON, CSV, SRT and WebVTT", elem_id="files")
        button.click(run, inputs=[video, want_cam], outputs=[top, timeline, cam, files, summary],
                     api_name="predict")


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read at import: no calls home
    try:
        import gradio
    except ImportError as e:
        raise InputError(f"serve needs Gradio: {PIP_HINT}") from e
    return gradio


def offline_theme() -> Any:
    """Gradio's default theme with system fonts instead of Google's, so the page renders with no internet."""
    gr = _gradio()
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])


def run(cfg: ServeConfig) -> int:
    """``r21d-zoo serve``: runs until interrupted."""
    device = default_device(world_info_from_env(), cfg.device)  # this rank's GPU, else the CPU
    _gradio()  # a missing extra is said before any work
    examples = [v.path for v in discover_videos(cfg.examples)]
    if cfg.examples and not examples:
        raise InputError(f"no videos found in {' '.join(cfg.examples)}")
    missing = [v for v in examples if not Path(v).is_file()]
    if missing:
        raise InputError(f"example video {missing[0]} does not exist; check the path or leave it out")
    model, trained = create_or_fall_back(cfg.model, "serve")
    server = Server(model, cfg.model.name, trained, cfg.settings, cfg.layer, device, examples, cfg.runtime)
    if not trained:
        print(f"[serve] {cfg.model.name}: {RANDOM_NOTE}; the page says so")
    page = server.build()
    try:
        page.queue().launch(server_name=cfg.host, server_port=cfg.port, share=False, theme=offline_theme(),
                            allowed_paths=sorted({str(Path(v).resolve().parent) for v in examples}))
    except OSError as e:  # Gradio's "Cannot find empty port", or an address this machine does not have
        raise InputError(f"cannot serve on {cfg.host}:{cfg.port} ({e}); pass another --port or --host") from e
    return 0
