"""Maintainer commands: converting and verifying the released weights, publishing them, regenerating the model cards
and README tables, and the catalogue (``list``, ``info``). Each exports a config dataclass and a ``run``."""
