"""What leaves the package: saved model folders with their cards, optimised inference copies, exported graphs."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .cards import render_model_card as render_model_card
    from .optimize import optimize_for_inference as optimize_for_inference
    from .saving import push_to_hub as push_to_hub, save_pretrained as save_pretrained
    from .exporting import export as export

_EXPORTS = {
    "render_model_card": ".cards",
    "optimize_for_inference": ".optimize",
    "push_to_hub": ".saving",
    "save_pretrained": ".saving",
    "export": ".exporting",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
