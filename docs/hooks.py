"""MkDocs hooks: pages generated at build time from their one source. The command-line reference comes from the
CLI's parser (built from the commands' config dataclasses), the benchmark tables from ``bench/results/*.json`` (what
the ``bench/`` scripts write). The model table of ``models.md`` is written by ``r21d-zoo cards`` from the registry
and checked by ``tests/test_pretrained.py``."""

import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# marker name -> (results file, key holding the Markdown table, a line added after it)
BENCH_TABLES = {
    "runtime-table": ("runtimes_cpu.json", "markdown", ""),
    "bench-table": ("models_cpu.json", "markdown", "![clips/s per model and inference path](bench_cpu.png)"),
    "extract-table": ("extract.json", "table", ""),
    "predict-table": ("predict_cpu.json", "table", ""),
    "families-table": ("families_cpu.json", "markdown", "Every row is in `bench/results/families_cpu.csv`."),
    "families-own-table": (
        "families_own_clip_cpu.json", "markdown", "Every row is in `bench/results/families_own_clip_cpu.csv`."
    ),
    "auto-table": ("auto_cpu.json", "markdown", ""),
    "ray-table": ("ray_cpu.json", "markdown", ""),
    "live-table": ("live_cpu.json", "markdown", ""),
}


def _bench_table(name: str) -> str:
    file, key, after = BENCH_TABLES[name]
    data = json.loads((RESULTS / file).read_text())
    machine = data.get("described") or data.get("machine")
    where = f"\n\nMachine: {machine}" if isinstance(machine, str) else ""
    if isinstance(machine, dict):
        where = "\n\nMachine: " + ", ".join(f"{k} {v}" for k, v in machine.items())
    return f"{data[key].strip()}{where}\n\n_From `bench/results/{file}`._" + (f"\n\n{after}" if after else "")


def _cli_reference() -> str:
    from r21d_zoo._options import SHARED_FLAG_EXCEPTIONS
    from r21d_zoo.cli import build_parser, command_table

    os.environ["COLUMNS"] = "110"
    parser = build_parser()
    rows = "\n".join(f"| `{flag}` | {why} |" for flag, why in sorted(SHARED_FLAG_EXCEPTIONS.items()))
    parts = [f"## Shared flags that differ, and why\n\n| flag | what differs |\n|---|---|\n{rows}\n"]
    for words in command_table():
        sub = parser._subparsers._group_actions[0].choices[words[0]]
        if len(words) > 1:
            sub = sub._subparsers._group_actions[0].choices[words[1]]
        parts.append(f"## r21d-zoo {' '.join(words)}\n\n```text\n{sub.format_help().strip()}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", _cli_reference())
    for name in BENCH_TABLES:
        pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.S)
        markdown = pattern.sub(lambda _: _bench_table(name), markdown)
    return markdown
