"""Jobs built on the model zoo and the video layer: extraction, fine-tuning and evaluation, probes, distillation,
inflation, conversion, the demo and the synthetic dataset. Each command-line job exports a config dataclass and a
``run`` (see :mod:`r21d_zoo.cli`)."""
