"""What leaves the package: saved model folders with their cards, optimised inference copies, exported graphs."""

from .cards import render_model_card as render_model_card
from .optimize import optimize_for_inference as optimize_for_inference
from .saving import push_to_hub as push_to_hub, save_pretrained as save_pretrained
from .exporting import export as export
