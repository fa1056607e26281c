"""``r21d-zoo cards``: the model cards of every weight tag, the README model table and the conversion commands,
regenerated from the registry (the tests fail while any is stale)."""

from pathlib import Path
from typing import List, Optional
from urllib.parse import unquote

from .._errors import InputError
from ..deploy.cards import model_stats, registry_config, render_model_card
from ..models import get_pretrained_cfg, list_models, list_pretrained, metric_value
from .configs import CardsConfig as CardsConfig


def card_path(directory: str, name: str) -> Path:
    return Path(directory) / f"{name}.md"


def write_cards(directory: str, names: Optional[List[str]] = None) -> List[Path]:
    out = []
    Path(directory).mkdir(parents=True, exist_ok=True)
    for name in names or list_pretrained():
        path = card_path(directory, name)
        path.write_text(render_model_card(registry_config(name)), encoding="utf-8")
        out.append(path)
    return out


TABLE_START, TABLE_END = "<!-- model-table:start -->", "<!-- model-table:end -->"


def render_model_table() -> str:
    """README table: every weight tag, then the architectures without released weights."""
    rows = [
        "| model | params (M) | GMACs | clip (T x crop, stride) | classes | Kinetics video@1 / @5 | weights from |",
        "|---|---|---|---|---|---|---|",
    ]
    with_weights = set()
    for name in list_pretrained():
        config = registry_config(name)
        cfg = get_pretrained_cfg(name)
        with_weights.add(cfg.architecture)
        params, gmacs = model_stats(config)
        top1, top5 = metric_value(cfg, "video_top1"), metric_value(cfg, "video_top5")
        acc = f"{top1} / {top5}" if top1 is not None else "-"
        origin = cfg.origin_url.split("github.com/")[-1]
        source = "VMZ caffe2 .pkl" if cfg.source_format == "caffe2_pkl" else f"{origin} .{cfg.source_format}"
        rows.append(
            f"| `{name}` | {params / 1e6:.1f} | {gmacs:.1f} | {cfg.clip.num_frames} x {cfg.clip.crop_size}², "
            f"{cfg.clip.sampling_stride} | {cfg.num_classes or 'from file'} | {acc} | {source} |"
        )
    for arch in list_models():
        if arch not in with_weights:
            config = registry_config(arch)
            params, gmacs = model_stats(config)
            cfg = get_pretrained_cfg(arch)
            rows.append(
                f"| `{arch}` | {params / 1e6:.1f} | {gmacs:.1f} | {cfg.clip.num_frames} x {cfg.clip.crop_size}², "
                f"{cfg.clip.sampling_stride} | {cfg.num_classes} | - | none released |"
            )
    return "\n".join(rows)


COMMANDS_START, COMMANDS_END = "<!-- conversion-commands:start -->", "<!-- conversion-commands:end -->"


def render_conversion_commands() -> str:
    """conversion/README.md's list: one command per released file of every weight tag, hash prefix first."""
    blocks = []
    for name in list_pretrained():
        for src in get_pretrained_cfg(name).download_sources():
            file = unquote(src["url"].split("?")[0].rsplit("/", 1)[-1])
            kind, flag = ("caffe2", "pkl") if src["source_format"] == "caffe2_pkl" else ("torch", "pth")
            blocks.append(
                f"# {name}  ({src.get('hash_prefix') or '-'})\n# {src['url']}\n"
                f'python conversion/convert_{kind}.py --{flag} "{file}" --model {name} --out converted/{name} --verify'
            )
    return "```bash\n" + "\n\n".join(blocks) + "\n```"


def _replace_between(path: str, start: str, end: str, body: str) -> None:
    text = Path(path).read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    Path(path).write_text(f"{head}{start}\n{body}\n{end}{tail}", encoding="utf-8")


def update_readme(path: str) -> None:
    _replace_between(path, TABLE_START, TABLE_END, render_model_table())


def update_conversion_readme(path: str) -> None:
    _replace_between(path, COMMANDS_START, COMMANDS_END, render_conversion_commands())


def _check_markers(path: str, flag: str, start: str, end: str) -> None:
    """The file a table goes into must exist and hold its markers, checked before any card is written."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot read it ({e.strerror or e}); name the existing page the table goes in")
    if start not in text or end not in text.split(start, 1)[-1]:
        raise InputError(f"{flag} {path} has no {start} ... {end} markers; add them where the table goes")


def run(cfg: CardsConfig) -> int:
    if cfg.readme:
        _check_markers(cfg.readme, "--readme", TABLE_START, TABLE_END)
    if cfg.conversion_readme:
        _check_markers(cfg.conversion_readme, "--conversion-readme", COMMANDS_START, COMMANDS_END)
    for path in write_cards(cfg.directory):
        print(path)
    if cfg.readme:
        update_readme(cfg.readme)
        print(cfg.readme)
    if cfg.conversion_readme:
        update_conversion_readme(cfg.conversion_readme)
        print(cfg.conversion_readme)
    return 0
