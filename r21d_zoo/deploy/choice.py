"""``runtime="auto"``, the default of every inference path, by measurement: on first use for a model shape, clip
shape, batch, precision, thread count and machine, the candidate runtimes are timed on clips laid out as the caller
feeds them (seconds, said in a log line) and the fastest is kept in a cache file, so later runs take it at once and
say which it is and why.

The candidates are the runtimes that can run the precision on the device: on the CPU, float32 runs on ``eager``,
``torch`` and ``onnxruntime`` (when installed), bf16/fp16 on ``eager`` and ``torch``; int8 runs only on
``onnxruntime``. Two rules narrow them:

- beside decoding workers on the CPU (``beside_decoders``), ``torch`` is left out: its trace per runner (about 3 s
  for R(2+1)D-18) and its threads, which fight the decoders for the cores, made it 1.4-2.0x the fastest runtime's
  time end to end (``bench/bench_auto.py``), while eager and onnxruntime (which does not spin between calls) keep
  their model-only order there;
- a model whose eager call takes under :data:`QUICK_CALL_S` runs eager without trying the others: an export or a
  trace costs seconds that such calls cannot win back.

A GPU runs ``eager`` (cudnn, with bf16 autocast and channels-last from :mod:`~r21d_zoo.deploy.placement`):
``torch.compile`` costs minutes per batch shape, which a few timed calls would misjudge, and ``bench/gpu.sh`` has not
measured it on a lent GPU yet. Every candidate computes the same float32 outputs within 1e-4
(``tests/test_optimize.py``), so the choice changes speed, not features."""

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .._io import atomic_write
from .onnx_runtime import onnxruntime_available
from .optimize import optimize_for_inference, resolve_runtime
from .placement import INT8, Placement, amp_dtype

_logger = logging.getLogger(__name__)

CACHE_FILE = "runtime_choice.json"
QUICK_CALL_S = 0.05
"""An eager call quicker than this keeps the model on eager without timing the others."""
SLOW_CALL_S = 1.0
"""An eager call slower than this is timed once, and so is each candidate after its warm-up call: a few such calls
already take long, and the runtimes' differences are far above the noise there."""


def default_choice_file() -> Path:
    return Path(torch.hub.get_dir()) / "r21d_zoo" / CACHE_FILE


def candidates(device: Union[str, torch.device], amp: Optional[str], beside_decoders: bool = False) -> List[str]:
    """The runtimes ``auto`` chooses from for precision ``amp`` on ``device`` (see the module docstring), in the order
    ties are broken."""
    if amp == INT8:
        return [resolve_runtime("auto", device, amp)]  # onnxruntime, or the error that says what is missing
    if torch.device(device).type != "cpu":
        return ["eager"]
    float32 = amp_dtype(amp, device) is None
    return (["eager"] + ([] if beside_decoders else ["torch"])
            + (["onnxruntime"] if float32 and onnxruntime_available() else []))  # fmt: skip


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choice_key(
    model: nn.Module,
    shape: Sequence[int],
    amp: Optional[str],
    device: Union[str, torch.device],
    options: Sequence[str] = (),
) -> str:
    """What decides which runtime is fastest: the model's layers (class, parameter names and shapes: not its
    weights), the input shape (batch included), the precision, the device, the threads, the CPU, the library versions
    and the runtimes it chose from."""
    layers = [type(model).__name__] + [f"{n}:{tuple(p.shape)}" for n, p in model.named_parameters()]
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    parts = dict(
        layers=hashlib.sha256("\n".join(layers).encode()).hexdigest()[:16],
        shape=list(shape),
        amp=amp,
        device=torch.device(device).type,
        threads=torch.get_num_threads(),
        cpu=_cpu_name(),
        torch=torch.__version__,
        onnxruntime=ort,
        options=list(options),
    )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _timer(
    model: nn.Module, runtime: str, amp: Optional[str], device: torch.device
) -> Callable[[torch.Tensor], object]:
    """A call of ``model`` on ``runtime`` as a runner makes it (eager: under the precision's autocast)."""
    if runtime == "eager":
        place = Placement.create(device, amp, channels_last=None, model=model)
        eager = place.place(model.eval())

        def run(x: torch.Tensor) -> object:
            with torch.inference_mode(), place.autocast():
                return eager(place.prepare(x))

        return run
    optimised = optimize_for_inference(model, amp=amp, runtime=runtime)

    def run_optimised(x: torch.Tensor) -> object:
        with torch.inference_mode():
            return optimised(x)

    return run_optimised


def measure(
    model: nn.Module,
    x: torch.Tensor,
    amp: Optional[str],
    device: Union[str, torch.device],
    runtimes: Sequence[str],
    repeats: int = 3,
) -> Dict[str, float]:
    """Median seconds of one call per runtime on clips ``x`` (after one untimed call that exports, traces or warms
    caches), the runtimes interleaved so a change of load hits them alike."""
    device = torch.device(device)
    runners = {name: _timer(model, name, amp, device) for name in runtimes}
    times: Dict[str, List[float]] = {name: [] for name in runtimes}
    for name, run in runners.items():
        run(x)
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def choose_runtime(
    model: nn.Module,
    shape: Sequence[int],
    amp: Optional[str] = "auto",
    device: Union[str, torch.device, None] = None,
    cache_file: Optional[Union[str, os.PathLike]] = None,
    repeats: int = 3,
    example: Optional[torch.Tensor] = None,
    beside_decoders: bool = False,
    quick: Optional[float] = None,
) -> Tuple[str, Dict[str, object]]:
    """The fastest runtime for ``model`` on inputs of ``shape`` (B, C, T, H, W), measured once and cached in
    ``cache_file`` (default ``$TORCH_HOME/hub/r21d_zoo/runtime_choice.json``); returns it and its cache record
    (``runtime``, ``seconds`` per candidate, ``measured`` time, ``cached``: whether this call measured). ``example``:
    clips of ``shape`` in the memory layout the caller feeds (its transform's output; the speed of eager depends on
    it), else random contiguous ones; ``beside_decoders`` and ``quick`` (default :data:`QUICK_CALL_S`): see the
    module docstring."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    options = candidates(device, amp, beside_decoders)
    if len(options) == 1:
        return options[0], dict(runtime=options[0], seconds={}, reason="the only runtime for this precision/device")
    path = Path(cache_file) if cache_file else default_choice_file()
    key = choice_key(model, shape, amp, device, options)
    record = _read_cache(path).get(key)
    if isinstance(record, dict) and record.get("runtime") in options:
        _logger.info("runtime auto: %s (%s; measured before, cached in %s)", record["runtime"], _said(record), path)
        return record["runtime"], dict(record, cached=True)
    x = example.to(device) if example is not None else torch.randn(*shape, device=device)
    seconds = measure(model, x, amp, device, ["eager"], 1)
    slow = seconds["eager"] >= SLOW_CALL_S
    if not slow:  # cheap to confirm: the median of a few calls decides (a call slowed by a busy moment does not)
        seconds = measure(model, x, amp, device, ["eager"], repeats)
    if seconds["eager"] >= (QUICK_CALL_S if quick is None else quick):
        _logger.info("runtime auto: timing %s on %s clips of %s (once for this model and machine)",
                     ", ".join(options), device.type, "x".join(map(str, shape)))  # fmt: skip
        seconds = measure(model, x, amp, device, options, 1 if slow else repeats)
    best = min(seconds, key=lambda name: seconds[name])  # ties: the earlier, simpler one
    record = dict(runtime=best, seconds={k: round(v, 6) for k, v in seconds.items()}, measured=time.time())
    cache = _read_cache(path)  # again: another process may have added its choices meanwhile
    cache[key] = record
    try:
        atomic_write(path, lambda f: f.write((json.dumps(cache, indent=1) + "\n").encode()), shared=True)
    except OSError as e:  # a read-only cache: the choice still holds for this run
        _logger.warning("runtime auto: cannot cache the choice in %s (%s)", path, e)
    _logger.info("runtime auto: %s (%s; cached in %s)", best, _said(record), path)
    return best, dict(record, cached=False)


def _read_cache(path: Path) -> Dict[str, Dict[str, object]]:
    """The cached choices; none when the file is missing or unreadable (it is then measured and written anew)."""
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _said(record: Dict[str, object]) -> str:
    seconds = record.get("seconds") or {}
    if len(seconds) == 1:
        return f"{1000 * next(iter(seconds.values())):.1f} ms a call: too quick for another runtime to pay off"
    best = min(seconds.values()) if seconds else 0
    return ", ".join(f"{k} {v / best:.2f}x" for k, v in seconds.items()) + " of the fastest" if best else ""
