"""The package's shape: layers that only point down, and no import cycles (module- and function-level imports)."""

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "r21d_zoo"

# Bottom to top. A module may import from its own layer or any layer below it, never above.
LAYERS = [
    (
        "r21d_zoo._version",
        "r21d_zoo._io",
        "r21d_zoo._progress",
        "r21d_zoo._errors",
        "r21d_zoo._world",
        "r21d_zoo._bounds",
        "r21d_zoo._options",
        "r21d_zoo._lazy",
    ),  # leaves (no torch): the shared vocabulary of options, lazy public names
    ("r21d_zoo.models",),  # the model zoo: architectures, registry, weight files, fetching, loading, weight surgery
    ("r21d_zoo.deploy",),  # saved folders, model cards, inference copies, precision and memory format
    ("r21d_zoo.video",),  # decoding, clip samplers, transforms
    ("r21d_zoo.data",),  # inputs, labelled datasets, shards, synthetic data, seeds, the feature store
    ("r21d_zoo.infer",),  # clips -> features, scores, timelines, Grad-CAM under a runtime; their settings
    ("r21d_zoo.train",),  # the one loop, its run folder, optimisers, distributed helpers, metrics
    ("r21d_zoo.jobs",),  # the user tasks: extract, finetune/evaluate, probe, distill, pretrain, dedup, demo, data tools
    ("r21d_zoo.commands",),  # maintainer commands: convert, verify-weights, export, publish, cards, list/info
    ("r21d_zoo.cli", "r21d_zoo.__main__", "r21d_zoo"),  # the command line and the public API
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: Set[str]) -> Set[str]:
    """Package modules ``name`` imports anywhere in its body (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # "from pkg import submodule" imports the submodule; "from pkg import name" imports pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # "import r21d_zoo.models._hub as h" -> the module itself
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer_of(name: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or (name.startswith(prefix + ".") and prefix != "r21d_zoo"):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best[0]


@pytest.fixture(scope="module")
def graph() -> Dict[str, Set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_has_a_layer_and_imports_only_downwards(graph):
    upward = [
        f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
        for src, dsts in graph.items()
        for dst in dsts
        if layer_of(dst) > layer_of(src)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles(graph):
    cycles: List[List[str]] = []
    state: Dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_models_private_modules_are_imported_only_inside_models(graph):
    """Other layers use what ``r21d_zoo.models`` exports; its ``_*`` modules may change without notice."""
    private = re.compile(r"^r21d_zoo\.models\._")
    outside = sorted(
        f"{src} imports {dst}"
        for src, dsts in graph.items()
        for dst in dsts
        if private.match(dst) and not src.startswith("r21d_zoo.models")
    )
    assert not outside, "\n".join(outside)


def test_the_checker_sees_function_level_relative_and_private_imports(tmp_path):
    """The walker must catch the kinds of imports that made the old cycles (a function-level ``from .. import``),
    and a private import from another layer."""
    mods = modules()
    graph = {name: imports_of(name, path, set(mods)) for name, path in mods.items()}
    assert "r21d_zoo.models._caffe2" in graph["r21d_zoo.models._files"]  # a module-level relative import
    fake = tmp_path / "r21d_zoo" / "models" / "_bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..jobs import finetune\n")
    found = imports_of("r21d_zoo.models._bad", fake, set(mods))
    assert found == {"r21d_zoo.jobs.finetune"} and layer_of("r21d_zoo.jobs.finetune") > layer_of("r21d_zoo.models._bad")
    sneaky = tmp_path / "r21d_zoo" / "deploy" / "_sneaky.py"
    sneaky.parent.mkdir(parents=True)
    sneaky.write_text("def f():\n    import r21d_zoo.models._files as files\n")
    assert imports_of("r21d_zoo.deploy._sneaky", sneaky, set(mods)) == {"r21d_zoo.models._files"}


def _sources() -> Dict[str, str]:
    return {name: path.read_text() for name, path in modules().items()}


def test_only_the_train_layer_takes_gradient_steps():
    """One loop: whatever a job calls its optimizer, backward passes and optimizer steps happen in the train layer.
    Grad-CAM takes gradients of a class score with respect to a feature map (``autograd.grad``), never a step."""
    gradient = re.compile(r"\.backward\(|autograd\.backward\(|\.step\(")
    users = sorted(name for name, text in _sources().items() if gradient.search(text))
    assert users and all(name.startswith("r21d_zoo.train.") for name in users), users
    attribution = sorted(name for name, text in _sources().items() if "autograd.grad(" in text)
    assert attribution == ["r21d_zoo.infer.gradcam"], attribution
    loops = [name for name in users if "scaler.scale(" in _sources()[name]]
    assert loops == ["r21d_zoo.train.loop"]


def test_videos_are_decoded_and_written_only_behind_the_video_layer():
    pyav = re.compile(r"^\s*(import av\b|from av\b)|PyAVReader\(", re.M)
    users = sorted(name for name, text in _sources().items() if pyav.search(text))
    assert users == ["r21d_zoo.video.live", "r21d_zoo.video.pyav", "r21d_zoo.video.writer"]


def _task_modules() -> Dict[str, str]:
    """The module each command's ``run`` lives in, by command."""
    from r21d_zoo.cli import command_table

    return {" ".join(words): cmd.target.partition(":")[0] for words, cmd in command_table().items()}


def test_no_task_imports_another_task(graph):
    """Tasks are thin (config in, layers called, outputs written): what two tasks share lives in a layer below them,
    so a task never imports another task, at module or function level."""
    tasks = set(_task_modules().values())
    assert "r21d_zoo.jobs.extract" in tasks and "r21d_zoo.jobs.evaluate" in tasks
    crossing = sorted(f"{src} imports {dst}" for src in tasks for dst in graph[src] if dst in tasks)
    assert not crossing, "\n".join(crossing)


def test_the_jobs_package_holds_only_tasks_and_their_configs():
    """A helper two tasks share belongs to a layer below (``infer``, ``data``, ``train``), not beside the tasks."""
    tasks = {m for m in _task_modules().values() if m.startswith("r21d_zoo.jobs.")}
    others = sorted(m for m in modules() if m.startswith("r21d_zoo.jobs.") and m not in tasks)
    assert others == ["r21d_zoo.jobs.configs"], others


def test_the_checker_sees_a_task_importing_a_task(tmp_path):
    fake = tmp_path / "r21d_zoo" / "jobs" / "serve.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from .predict import predict\n")
    assert "r21d_zoo.jobs.predict" in imports_of("r21d_zoo.jobs.serve", fake, set(modules()))


def test_the_light_vocabulary_names_what_the_layers_define():
    """The option choices the command line offers without importing torch are the ones the layers implement."""
    from r21d_zoo import _options
    from r21d_zoo.data import features, labelled, options
    from r21d_zoo.deploy import optimize
    from r21d_zoo.video import reader

    assert tuple(labelled.LABEL_FORMATS) == options.LABEL_FORMAT_NAMES
    assert tuple(features.FEATURE_FORMATS) == _options.FEATURE_FORMAT_NAMES
    assert optimize.RUNTIMES is _options.RUNTIMES and reader.DECODERS is _options.DECODERS


# One family's internals: its class, its stage and head attributes, its key names and its pooling switch.
_FAMILY_INTERNALS = re.compile(
    r"VideoResNet|\.stem\[|\.(fc|layer[1-4]|stages|global_pool)\b|[\"'](stem\.0|fc)\.(weight|bias)[\"']"
)


def test_outside_models_code_uses_the_model_api_never_one_familys_internals():
    """A second family (``tests/toy_family.py``) must run everywhere without an edit outside ``models/``: other layers
    reach a model through ``VideoModel``'s API and the cfg's ``first_conv`` / ``classifier`` names."""
    found = sorted(
        f"{name}: {m.group(0)}"
        for name, text in _sources().items()
        if not name.startswith("r21d_zoo.models") and name != "r21d_zoo"  # the package re-exports the class
        for m in _FAMILY_INTERNALS.finditer(text)
    )
    assert not found, "\n".join(found)
    assert _FAMILY_INTERNALS.search('x = model.stem[0].in_channels; sd["fc.weight"]')


def test_the_decoders_share_one_read_clip():
    """Padding, the no-frames error and the clip's shape are decided once (``VideoReader.read_clip``); a decoder only
    finds frames (``_read``)."""
    defines = sorted(n for n, text in _sources().items() if re.search(r"^\s+def read_clip\(", text, re.M))
    assert defines == ["r21d_zoo.video.reader"], defines
    readers = sorted(n for n, text in _sources().items() if re.search(r"^\s+def _read\(", text, re.M))
    decoders = [f"r21d_zoo.video.{m}" for m in ("frames", "live", "pyav", "torchcodec_reader")]
    assert readers == sorted(decoders + ["r21d_zoo.video.reader"]), readers  # the abstract one and each decoder
