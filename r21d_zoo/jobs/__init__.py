"""The user tasks: extraction, fine-tuning and evaluation, the linear probe, distillation, pre-training, dedup, the
demo, and the shard and synthetic-data commands. Each exports a config dataclass and a ``run`` (see
:mod:`r21d_zoo.cli`); what they share lives in the layers below (data, train, video, deploy, models)."""
