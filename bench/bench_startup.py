"""Start-up time: ``r21d-zoo --help``, ``r21d-zoo extract --help``, a usage error and ``import r21d_zoo``, against
``import torch`` measured in the same run (fresh interpreters, median of N), plus the top imports of ``import
r21d_zoo.cli`` from ``python -X importtime``. Writes ``bench/results/startup.json``.

    python bench/bench_startup.py            # 7 runs of each
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "startup.json"
CASES = {
    "import torch": [sys.executable, "-c", "import torch"],
    "import r21d_zoo": [sys.executable, "-c", "import r21d_zoo"],
    "r21d-zoo --help": [sys.executable, "-m", "r21d_zoo", "--help"],
    "r21d-zoo extract --help": [sys.executable, "-m", "r21d_zoo", "extract", "--help"],
    "usage error (extract --batch-size 0)": [sys.executable, "-m", "r21d_zoo", "extract", "v.mp4", "-o", "o",
                                             "--batch-size", "0"],
    "import r21d_zoo; create_model": [sys.executable, "-c", "import r21d_zoo; r21d_zoo.create_model"],
}


def wall(cmd) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def top_imports(n: int = 8) -> list:
    """The ``import r21d_zoo.cli`` imports with the largest cumulative time (``-X importtime``, top level only)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import r21d_zoo.cli"], capture_output=True,
                         text=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (p.strip() for p in line.split(":", 1)[1].split("|"))
        if cumulative.isdigit():
            rows.append((int(cumulative) / 1e6, name))
    return [dict(module=m, cumulative_s=round(s, 4)) for s, m in sorted(rows, reverse=True)[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times = {name: [] for name in CASES}
    for _ in range(args.repeats):  # interleaved, so load drifts hit every case alike
        for name, cmd in CASES.items():
            times[name].append(wall(cmd))
    median = {name: statistics.median(t) for name, t in times.items()}
    torch_s = median["import torch"]
    rows = [dict(case=name, median_s=round(s, 3), vs_import_torch=round(s / torch_s, 3)) for name, s in median.items()]
    table = ["| case | median (s) | / import torch |", "|---|---|---|"]
    table += [f"| {r['case']} | {r['median_s']} | {r['vs_import_torch']} |" for r in rows]
    markdown = "\n".join(table)
    print(markdown)
    help_s, import_s = median["r21d-zoo --help"], median["import r21d_zoo"]
    print(f"--help {help_s:.3f} s (target <= 0.5 s); import r21d_zoo {import_s:.3f} s = import torch "
          f"{import_s - torch_s:+.3f} s (target <= +0.5 s)")
    machine = dict(cpu=platform.processor() or platform.machine(), python=platform.python_version(),
                   repeats=args.repeats)
    RESULTS.write_text(json.dumps(dict(rows=rows, markdown=markdown, top_imports_of_cli=top_imports(),
                                       machine=machine), indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
