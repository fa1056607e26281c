"""The shared vocabulary of options: every name and meaning that several layers or commands use (decoders, runtimes,
precisions, feature formats, the device, decoding workers), defined once and importable without torch, so the
command line can answer ``--help`` at once and a flag means the same in every command that has it.

A config field built here (``device_field()``, ``runtime_field()``, ...) is the one declaration of that option;
``tests/test_cli.py`` checks that an option several commands share has one meaning and one default, and lists the
documented exceptions (:data:`SHARED_FLAG_EXCEPTIONS`)."""

import os
from dataclasses import field
from typing import Any, Dict, Literal

from ._bounds import above, at_least

# -- decoding (r21d_zoo.video)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
DECODERS: Dict[str, str] = {  # name -> "module:Reader", imported on first use
    "pyav": "r21d_zoo.video.pyav:PyAVReader",
    "torchcodec": "r21d_zoo.video.torchcodec_reader:TorchCodecReader",  # optional extra
    "frames": "r21d_zoo.video.frames:FrameFolderReader",  # folders of frame images
}
FRAMES_DECODER = "frames"
DEFAULT_DECODER = "pyav"
DEFAULT_FRAMES_FPS = 30.0

# -- runtimes and precision (r21d_zoo.deploy)
RUNTIMES = ("eager", "torch", "onnxruntime", "auto")
RUNTIME_HELP = (
    "auto (the default: the fastest of the others for this model, clip and machine, measured once and cached; "
    "int8: onnxruntime; GPU: eager), eager (the model as built), torch (BN folded; TorchScript on CPU, "
    "torch.compile on GPU), onnxruntime (its ONNX export, cached; CPU; float32 or int8)"
)
Amp = Literal["auto", "bf16", "fp16", "none"]
AMP_CHOICES = ("auto", "bf16", "fp16", "none")
AMP_HELP = "autocast: auto (bf16 on GPU, float32 on CPU), bf16, fp16 or none (float32)"
INT8 = "int8"
InferenceAmp = Literal["auto", "bf16", "fp16", "none", "int8"]
INFERENCE_AMP_CHOICES = AMP_CHOICES + (INT8,)
INFERENCE_AMP_HELP = AMP_HELP + ", or int8 (static quantization on the onnxruntime runtime, CPU)"
CHANNELS_LAST_HELP = "channels_last_3d memory format (default: on GPU, and on CPU for inference of CSN models)"

# -- outputs (r21d_zoo.data.features)
FEATURE_FORMAT_NAMES = ("npy", "safetensors", "hdf5")

# -- inputs, models and windows, as several commands say them
DATA_HELP = "a labelled dataset (any annotation format; see the fine-tuning guide): every sample, each segment alone"
TRAIN_HELP = "labelled training videos (any annotation format; see the fine-tuning guide)"
INCLUDE_HELP = "only these shard keys (a `shards subset` list)"
FLIP_HELP = "random horizontal flips (turn off when left/right matters)"
MODEL_ARGS_HELP = "JSON object of extra create_model arguments, e.g. drop_rate"
FLOW_MODEL_HELP = (
    "two-stream: a flow model (arch.tag, hf-hub:, local-dir:; its weights as --model's) whose scores are fused with "
    "--model's"
)
STRIDE_SEC_HELP = "seconds between window starts (default: back to back)"
DEVICE_HELP = "cpu, cuda, cuda:N or mps (default: this rank's GPU, else the CPU)"


def default_workers() -> int:
    """Data-loading processes: up to 4, no more than the machine's cores."""
    return min(4, os.cpu_count() or 1)


def device_field() -> Any:
    """``--device``: where the model runs; every command that runs a model defaults to the GPU when there is one."""
    return field(default=None, metadata=dict(help=DEVICE_HELP))


def decoder_field() -> Any:
    """``--decoder``: which library decodes the videos."""
    return field(default=DEFAULT_DECODER, metadata=dict(help="video decoder", choices=tuple(DECODERS)))


def workers_field(help: str = "decoding (data-loading) processes; 0: in the main process") -> Any:
    """``--workers``: data-loading processes (0: in the main process)."""
    return field(default_factory=default_workers, metadata=dict(help=help, bound=at_least(0)))


def runtime_field(default: str = "auto", **metadata: Any) -> Any:
    """``--runtime``: what runs the model (by default the fastest, measured: ``auto``)."""
    return field(default=default, metadata=dict(help=RUNTIME_HELP, choices=RUNTIMES, **metadata))


def inference_amp_field() -> Any:
    """``--amp`` of the commands that only run inference (int8 included)."""
    return field(default="auto", metadata=dict(help=INFERENCE_AMP_HELP))


def channels_last_field() -> Any:
    return field(default=None, metadata=dict(help=CHANNELS_LAST_HELP))


def frames_fps_field() -> Any:
    """``--frames-fps``: the rate frame folders are read at."""
    return field(
        default=None,
        metadata=dict(
            help=f"frame rate of frame folders (default: the dataset's, else {DEFAULT_FRAMES_FPS:g})", bound=above(0)
        ),
    )


# Flags several commands share whose meaning (help, type, choices) or default differs between them, and why. Every
# other shared flag is declared once and means the same everywhere (tests/test_cli.py); the docs' CLI page shows this.
SHARED_FLAG_EXCEPTIONS: Dict[str, str] = {
    "--out": "each command's own output (a folder for most; a file for export, dedup, shards stats/subset), as its "
    "help says",
    "--model": "a weight to start from (default: the task's: a feature extractor, a classifier, the demo's 8-frame "
    "one); an architecture trained from random initialisation (distill, pretrain); a registry tag to convert to "
    "(convert)",
    "--batch-size": "clips per forward pass (inference) or clips per process per optimizer step (training)",
    "--amp": "inference commands also offer int8 (quantized on the onnxruntime runtime)",
    "--runtime": "demo runs one clip to show the model works, on eager: timing the others (an export and a trace, "
    "seconds) would cost more than the clip; every other inference command measures (auto)",
    "--num-clips": "clips per video: the video-level protocol (predict, serve, evaluate, finetune's validation) or the "
    "uniformly spaced windows extract stores; each default follows its task",
    "--num-frames": "a model trained from random initialisation (distill, pretrain) has no weights to take it from: 8",
    "--lr": "each recipe's learning rate (fine-tuning 0.01, distillation 0.1, IG-65M pre-training 0.192)",
    "--reference-batch": "each recipe's global batch its learning rate is given for",
    "--epochs": "each recipe's length",
    "--schedule": "each recipe's decay (step for fine-tuning, cosine for distillation)",
    "--step-epochs": "each recipe's step",
    "--loss": "each training task's own losses",
    "--layer": "the stage Grad-CAM explains (predict, explain, serve) or the layer extract stores features of",
    "--exclude": "a file of what to leave out: video paths (video inputs) or shard keys (pretrain, shards stats)",
    "--seed": "what is seeded: training, a --random-weights initialisation (extract), the data (synthetic, subset)",
    "--target": "the class to explain (explain), the teacher's frames (distill), the target feature folder (dedup)",
    "--threshold": "a class score (predict, serve) or a cosine similarity (dedup)",
    "--frames": "clip length to check (verify-weights) or frames per synthetic video",
    "--size": "clip side to check (verify-weights) or the synthetic frames' side",
    "--data": "required by evaluate; extract and check-videos take videos or --data",
}
