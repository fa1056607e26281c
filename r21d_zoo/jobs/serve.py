"""``r21d-zoo serve``: a web page where a person drops or picks a video and sees what the model answers.

The page (Gradio, the optional ``serve`` extra) shows the video-level top-5 and the timeline plot of
:func:`~r21d_zoo.infer.timeline.predict`, the timeline's JSON/CSV/SRT/WebVTT files to download and, when asked, the
Grad-CAM of the top class on its best window (:func:`~r21d_zoo.infer.timeline.explain_top`). Its heading says which
weights answer, and says plainly when they are random (``--random-weights``, or registry weights that could not be
fetched, as ``demo`` falls back). It uses system fonts, so it renders offline. Each answer's files are written to a
folder of their own under the system's temporary directory (Gradio serves files from there), removed when the server
stops; Gradio's copies of uploads and answers are deleted after an hour.
"""

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch.nn as nn

from .._errors import InputError
from ..data.inputs import discover_videos
from ..video import VideoDecodeError
from ..train.distributed import default_device, world_info_from_env
from .configs import ServeConfig as ServeConfig
from ..infer.config import create_or_fall_back
from ..infer.gradcam import check_layer, write_explanation
from ..infer.config import PredictConfig
from ..infer.timeline import explain_top, predict, write_outputs

PIP_HINT = "pip install 'r21d-zoo[serve]'"
RANDOM_NOTE = "RANDOM WEIGHTS: this model holds no trained weights, so its labels are meaningless"


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
        layer: str = "layer4", device: Optional[str] = None, examples: Sequence[str] = (),
    ) -> None:
        check_layer(model, layer)
        self.model, self.name, self.trained = model.eval(), name, trained
        self.settings, self.layer, self.device = settings or PredictConfig(), layer, device
        self.examples = list(examples)
        self._answers = tempfile.TemporaryDirectory(prefix="r21d-serve-")  # removed with the server

    def answer(self, video: Optional[str], want_cam: bool = False) -> Tuple[Dict[str, float], str, Optional[str],
                                                                          List[str], str]:
        """The top-5 as ``{label: score}``, the timeline PNG, the Grad-CAM GIF (when asked), the files to download
        and a line of text, for the video at ``video``."""
        if not video:
            raise InputError("no video: upload one or pick an example first")
        out = Path(tempfile.mkdtemp(dir=self._answers.name))
        name = Path(video).stem
        p = predict(self.model, video, self.settings, device=self.device)
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
        return page


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
    server = Server(model, cfg.model.name, trained, cfg.settings, cfg.layer, device, examples)
    if not trained:
        print(f"[serve] {cfg.model.name}: {RANDOM_NOTE}; the page says so")
    page = server.build()
    try:
        page.queue().launch(server_name=cfg.host, server_port=cfg.port, share=False, theme=offline_theme(),
                            allowed_paths=sorted({str(Path(v).resolve().parent) for v in examples}))
    except OSError as e:  # Gradio's "Cannot find empty port", or an address this machine does not have
        raise InputError(f"cannot serve on {cfg.host}:{cfg.port} ({e}); pass another --port or --host") from e
    return 0
