"""The train layer: the one loop (:func:`fit` by epochs, :func:`fit_stream` by clips over a stream), its run folder
(resume, checkpoints, metrics, exports, the lock), optimisers and schedules, distributed helpers and the metrics."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .distributed import WorldInfo as WorldInfo, init_distributed as init_distributed
    from .loop import (
        FitResult as FitResult,
        StepContext as StepContext,
        StepOutput as StepOutput,
        TrainConfig as TrainConfig,
        fit as fit,
        fit_stream as fit_stream,
    )
    from .optim import (
        OptimConfig as OptimConfig,
        SampleOptimConfig as SampleOptimConfig,
        ig65m_schedule as ig65m_schedule,
    )
    from .run_folder import RunFolder as RunFolder

_EXPORTS = {
    "WorldInfo": ".distributed",
    "init_distributed": ".distributed",
    "FitResult": ".loop",
    "StepContext": ".loop",
    "StepOutput": ".loop",
    "TrainConfig": ".config",
    "fit": ".loop",
    "fit_stream": ".loop",
    "OptimConfig": ".config",
    "SampleOptimConfig": ".config",
    "ig65m_schedule": ".config",
    "RunFolder": ".run_folder",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
