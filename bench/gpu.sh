#!/usr/bin/env bash
# Every GPU measurement in one run, for the day a GPU is lent (the `device` tool): the family table on CUDA (eager vs
# torch runtime = torch.compile, float32 vs bf16, channels-last by default there), the optimisation steps of
# bench_models (bf16 + channels_last + torch.compile vs eager float32), RAFT optical flow against the model it feeds,
# end-to-end extraction with NVDEC (torchcodec) against PyAV decoding, and live windows against real time (which model
# keeps up on the GPU). Results land in bench/results/ (CSV/JSON
# rows naming the device) and are copied to $OUT when the device tool sets it; never run by the tests.
#
#   bash bench/gpu.sh            # about 10 minutes on one H100
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import torch
assert torch.cuda.is_available(), "bench/gpu.sh needs a CUDA GPU"
print("GPU:", torch.cuda.get_device_name(), torch.version.cuda, torch.__version__)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python bench/bench_families.py --device cuda --batches 1 8 --own-clip --out bench/results/families_cuda.csv
python bench/bench_models.py --device cuda --compile --amp bf16 --json bench/results/models_cuda.json
python bench/bench_flow.py                     # writes bench/results/flow_cuda.json on a GPU
python bench/bench_extract.py --minutes 2 --workers 4 --json bench/results/extract_cuda.json  # NVDEC vs PyAV rows
python bench/bench_live.py --json bench/results/live_cuda.json  # live windows against real time
if [ -n "${OUT:-}" ]; then
    cp bench/results/*cuda* "$OUT"/
fi
