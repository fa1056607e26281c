"""``r21d-zoo <command>`` (also ``python -m r21d_zoo <command>``): every command is a job's config dataclass plus its
``run``. Options, their defaults and help text are generated from the dataclass fields (help and flag names in the
field metadata), so a default lives in one place. Nested config dataclasses contribute their fields as options of
the same command; a clip field (``clip_field()``) contributes one option per :class:`ClipSpec` field, each defaulting
to the weights' value.

Field metadata understood here: ``help``, ``flag`` (a flag or a tuple of flags), ``positional``, ``negate`` (a bool
field set to False by the flag, e.g. ``--random-weights``), ``choices``, ``parse`` (a str -> value function),
``deprecated`` (old flags of the option, accepted with a warning for one release), ``deprecated_switch`` (old
switches that stood for one value of the option: ``{"--optimize": "torch"}``, with the same warning).

Every command takes ``--config FILE.yaml``: its values (the config dataclass as nested mappings, as the
``config.yaml`` written beside a command's outputs holds it) become the defaults, and flags on the command line win.
A command whose ``out`` folder exists when it ends writes the resolved ``OUT/config.yaml``, so
``r21d-zoo <command> --config OUT/config.yaml`` replays it (``-o`` elsewhere for a second copy).

Exit codes: 0 success; 1 some items of a batch failed (recorded, the rest done); 2 usage error (a bad option or an
unknown model name); 3 input or configuration error (a file, folder, label, checkpoint or config that cannot be used).
Errors are one line on stderr; ``--debug`` shows the traceback.
"""

import argparse
import dataclasses
import importlib
import json
import logging
import os
import pickle
import sys
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._version import __version__
from ._bounds import option_flags
from ._errors import EXIT_INPUT, EXIT_PARTIAL, EXIT_USAGE, InputError, UsageError
from ._io import atomic_write
from .commands.configs import (
    CardsConfig,
    ConvertConfig,
    ExportConfig,
    InfoConfig,
    ListConfig,
    PublishConfig,
    VerifyWeightsConfig,
)
from .jobs.configs import (
    CheckVideosConfig,
    DedupConfig,
    DemoConfig,
    DistillJobConfig,
    EvaluateJobConfig,
    ExplainJobConfig,
    ExtractJobConfig,
    FinetuneJobConfig,
    PackConfig,
    PredictJobConfig,
    PretrainJobConfig,
    ProbeJobConfig,
    ServeConfig,
    StatsConfig,
    SubsetConfig,
    SyntheticConfig,
)
from .models import ClipSpec


@dataclass(frozen=True)
class Command:
    """A command: its config dataclass (light: the parser is built from it without importing torch) and where its
    ``run`` lives, ``"module:function"``, imported only when the command runs."""

    config: type
    target: str

    @property
    def run(self) -> Callable[[Any], int]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


COMMANDS: Dict[str, Union[Command, Dict[str, Command]]] = {  # a dict: a group, `r21d-zoo GROUP COMMAND`
    "list": Command(ListConfig, "r21d_zoo.commands.catalog:run_list"),
    "info": Command(InfoConfig, "r21d_zoo.commands.catalog:run_info"),
    "demo": Command(DemoConfig, "r21d_zoo.jobs.demo:run"),
    "predict": Command(PredictJobConfig, "r21d_zoo.jobs.predict:run"),
    "explain": Command(ExplainJobConfig, "r21d_zoo.jobs.explain:run"),
    "serve": Command(ServeConfig, "r21d_zoo.jobs.serve:run"),
    "extract": Command(ExtractJobConfig, "r21d_zoo.jobs.extract:run"),
    "finetune": Command(FinetuneJobConfig, "r21d_zoo.jobs.finetune:run"),
    "evaluate": Command(EvaluateJobConfig, "r21d_zoo.jobs.evaluate:run"),
    "probe": Command(ProbeJobConfig, "r21d_zoo.jobs.probe:run"),
    "distill": Command(DistillJobConfig, "r21d_zoo.jobs.distill:run"),
    "pretrain": Command(PretrainJobConfig, "r21d_zoo.jobs.pretrain:run"),
    "convert": Command(ConvertConfig, "r21d_zoo.commands.convert:run"),
    "verify-weights": Command(VerifyWeightsConfig, "r21d_zoo.commands.convert:run_verify_weights"),
    "export": Command(ExportConfig, "r21d_zoo.commands.convert:run_export"),
    "cards": Command(CardsConfig, "r21d_zoo.commands.cards:run"),
    "publish": Command(PublishConfig, "r21d_zoo.commands.publish:run"),
    "synthetic": Command(SyntheticConfig, "r21d_zoo.jobs.synthetic:run"),
    "dedup": Command(DedupConfig, "r21d_zoo.jobs.dedup:run"),
    "check-videos": Command(CheckVideosConfig, "r21d_zoo.jobs.check_videos:run"),
    "shards": {
        "pack": Command(PackConfig, "r21d_zoo.jobs.shards:run_pack"),
        "stats": Command(StatsConfig, "r21d_zoo.jobs.shards:run_stats"),
        "subset": Command(SubsetConfig, "r21d_zoo.jobs.shards:run_subset"),
    },
}


def command_table() -> Dict[Tuple[str, ...], Command]:
    """Every command by the words that call it: ``("extract",)``, ``("shards", "pack")`` ..."""
    table: Dict[Tuple[str, ...], Command] = {}
    for name, command in COMMANDS.items():
        for sub, cmd in command.items() if isinstance(command, dict) else [(None, command)]:
            table[(name,) if sub is None else (name, sub)] = cmd
    return table


_SEP = "__"  # joins the field path of a nested option into its argparse dest


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default where it says something: not for flags, empty values, or help that names its own default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if any(default is x for x in (None, False, True, argparse.SUPPRESS)) or default == {}:
            return action.help or ""
        if "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _unwrap_optional(tp: Any) -> Tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def _value_type(tp: Any) -> Tuple[Callable[[str], Any], Optional[Sequence[Any]], bool]:
    """(str -> value, choices, takes several values) for an annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return type(args[0]), args, False
    if origin in (list, tuple, List, Tuple):
        element = _value_type(args[0])
        return element[0], element[1], True
    if origin is typing.Union:  # e.g. int | (int, int) for a resize, str | int for a layer
        if any(typing.get_origin(a) in (tuple, list) for a in args):
            return int, None, True
        return str, None, False
    if tp in (int, float, str):
        return tp, None, False
    return str, None, False


def _parser_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _add_option(parser: argparse.ArgumentParser, f: dataclasses.Field, tp: Any, default: Any, dest: str) -> None:
    meta = f.metadata
    help_text = meta.get("help", "")
    tp, _ = _unwrap_optional(tp)
    if meta.get("positional"):
        convert, choices, many = _value_type(tp)
        kwargs: Dict[str, Any] = dict(type=convert, choices=choices, help=help_text)
        if many:
            kwargs["nargs"] = "+" if default is MISSING else "*"
        elif default is not MISSING:
            kwargs["nargs"] = "?"
        if default is not MISSING:
            kwargs["default"] = default
        parser.add_argument(dest, metavar=meta.get("metavar", f.name.upper()), **kwargs)
        return
    flags = option_flags(f)
    kwargs = dict(dest=dest, help=help_text)
    if default is MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    if meta.get("negate"):
        kwargs.update(action="store_false")
    elif tp is bool:
        kwargs.update(action="store_true" if default is False else argparse.BooleanOptionalAction)
    elif "parse" in meta:
        kwargs.update(type=_parser_type(meta["parse"]), metavar="JSON")
    else:
        convert, choices, many = _value_type(tp)
        choices = meta.get("choices", choices)
        kwargs.update(type=convert, choices=choices, metavar=None if choices else meta.get("metavar", f.name.upper()))
        if many:
            if default is MISSING:
                kwargs["action"] = "append"  # a repeatable option, e.g. --teacher A --teacher B
            else:
                kwargs["nargs"] = "+"
    parser.add_argument(*flags, **kwargs)
    if meta.get("deprecated"):  # old names of this option, accepted with a warning for one release
        if kwargs.get("action") is not None or default is MISSING:
            raise TypeError(f"{f.name}: only options that take a value and have a default can have deprecated flags")
        kwargs.update(action=_DeprecatedFlag, new=flags[0], help=argparse.SUPPRESS)
        parser.add_argument(*meta["deprecated"], **kwargs)
    for old, value in meta.get("deprecated_switch", {}).items():
        new = f"{flags[0]} {value}"
        parser.add_argument(old, dest=dest, action=_DeprecatedSwitch, const=value, new=new, help=argparse.SUPPRESS)


class _Deprecated(argparse.Action):
    """An old flag: acts like the action it is mixed with, after a warning naming the option that replaces it."""

    def __init__(self, *args: Any, new: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None):
        print(
            f"warning: {option_string} is deprecated and will be removed in the next release; use {self.new}",
            file=sys.stderr,
        )
        super().__call__(parser, namespace, values, option_string)


class _DeprecatedFlag(_Deprecated, argparse._StoreAction):
    """Stores like the option it stands for."""


class _DeprecatedSwitch(_Deprecated, argparse._StoreConstAction):
    """An old switch that stood for one value of an option: stores that value."""


def add_config_options(
    parser: argparse.ArgumentParser,
    cls: type,
    defaults: Any = None,
    path: str = "",
    overrides: Optional[Dict[str, Dict[str, Any]]] = None,
) -> None:
    """Options for every field of the dataclass ``cls``; ``defaults`` is an instance whose values are the defaults
    (for a nested config), else the fields' own defaults; ``overrides`` replace field metadata by field name (a
    nested config's ``overrides`` metadata, e.g. to make its model name positional)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if overrides and f.name in overrides:
            f = _with_metadata(f, {**f.metadata, **overrides[f.name]})
        default = field_default(f) if defaults is None else getattr(defaults, f.name)
        dest = path + f.name
        if f.metadata.get("clip"):
            clip_hints = typing.get_type_hints(ClipSpec)
            for cf in _clip_options():
                clip_field = _with_metadata(
                    cf, dict(cf.metadata, help=f"{cf.metadata['help']} (default: the weights')")
                )
                value = default.get(cf.name) if isinstance(default, dict) else None
                _add_option(parser, clip_field, Optional[clip_hints[cf.name]], value, dest + _SEP + cf.name)
        elif dataclasses.is_dataclass(hints[f.name]):
            add_config_options(parser, hints[f.name], default, dest + _SEP, f.metadata.get("overrides"))
        else:
            _add_option(parser, f, hints[f.name], default, dest)


def _clip_options() -> List[dataclasses.Field]:
    """The ClipSpec fields a clip option offers (``cli=False``: set by the weights, not by a flag)."""
    return [cf for cf in dataclasses.fields(ClipSpec) if cf.metadata.get("cli", True)]


def _with_metadata(f: dataclasses.Field, metadata: Dict[str, Any]) -> dataclasses.Field:
    copy = dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=metadata)
    copy.name = f.name
    return copy


def config_from_args(cls: type, args: argparse.Namespace, path: str = "") -> Any:
    """The config dataclass ``cls`` filled from parsed options (the inverse of :func:`add_config_options`)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        dest = path + f.name
        if f.metadata.get("clip"):
            clip = {cf.name: getattr(args, dest + _SEP + cf.name) for cf in _clip_options()}
            values[f.name] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in clip.items() if v is not None}
        elif dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = config_from_args(hints[f.name], args, dest + _SEP)
        else:
            value = getattr(args, dest)
            origin = typing.get_origin(_unwrap_optional(hints[f.name])[0])
            values[f.name] = tuple(value) if origin is tuple and isinstance(value, list) else value
    return cls(**values)


def _summary(cls: type) -> str:
    return (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r21d-zoo",
        allow_abbrev=False,
        description="R(2+1)D, R3D, MC3, R2D and CSN video models with their released weights.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"r21d-zoo {__version__}")
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"), help="logging")
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common.add_argument("--config", metavar="FILE.yaml", help="defaults from a config file (flags still win)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        if isinstance(command, dict):
            doc = f"{name}: {', '.join(command)}"
            group = sub.add_parser(name, help=doc, description=doc, formatter_class=_HelpFormatter, allow_abbrev=False)
            inner = group.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
            for sub_name, sub_command in command.items():
                doc = _summary(sub_command.config)
                p = inner.add_parser(
                    sub_name, help=doc, description=doc, formatter_class=_HelpFormatter, parents=[common],
                    allow_abbrev=False,
                )
                add_config_options(p, sub_command.config)
            continue
        doc = _summary(command.config)
        p = sub.add_parser(
            name, help=doc, description=doc, formatter_class=_HelpFormatter, parents=[common], allow_abbrev=False
        )
        add_config_options(p, command.config)
    return parser


def _log_handler(level: str) -> logging.Handler:
    """Timestamped lines on stderr, so a batch job under nohup or SLURM shows its progress in its log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(level.upper())
    return handler


CONFIG_FILE = "config.yaml"


def config_defaults(cls: type, values: Any, where: str, path: str = "") -> Dict[str, Any]:
    """The argparse dests and values of a config file's mapping for the config dataclass ``cls`` (nested configs as
    nested mappings, a clip field as a mapping of ClipSpec fields); a key ``cls`` has no field for is an error."""
    if not isinstance(values, dict):
        raise UsageError(f"{where}: {path.replace(_SEP, '.') or 'the file'} must be a mapping of settings")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: Dict[str, Any] = {}
    for key, value in values.items():
        dotted = (path + key).replace(_SEP, ".")
        if key not in fields:
            raise UsageError(f"{where}: unknown setting {dotted!r}; known here: {', '.join(fields)}")
        dest = path + key
        if fields[key].metadata.get("clip"):
            clip = config_defaults(ClipSpec, value or {}, where, dest + _SEP)
            out.update(clip)
        elif dataclasses.is_dataclass(hints[key]):
            out.update(config_defaults(hints[key], value, where, dest + _SEP))
        else:
            out[dest] = value
    return out


def _typed(action: argparse.Action, value: Any, path: str) -> Any:
    """A config file's value as its flag would parse it: a bool field takes only true/false, a number field only
    a number of its type (1.7 is no epoch count), so a file gets exactly the validation its flag gets."""
    name = action.dest.replace(_SEP, ".")
    if value is None:
        return value
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{path}: {name} {value!r} is not true or false")
        return value
    convert = action.type
    if convert is None:
        return value
    many = action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction)
    if many and not isinstance(value, list):
        value = [value]
    if not many and isinstance(value, (list, dict)) and convert in (int, float, str):
        raise UsageError(f"{path}: {name} takes one value, got {value!r}")

    def one(v: Any) -> Any:
        if isinstance(v, (dict, list)):  # a JSON option (--model-args) given as a mapping in the file
            return v
        if isinstance(v, bool) or (convert is int and isinstance(v, float)):
            kind = "an integer" if convert is int else f"a {convert.__name__}"
            raise UsageError(f"{path}: {name} {v!r} is not {kind}")
        try:
            return convert(v)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise UsageError(f"{path}: {name} {v!r} is not a valid value ({e})") from None

    return [one(v) for v in value] if many else one(value)


def _apply_config_file(sub: argparse.ArgumentParser, cls: type, path: str) -> None:
    """Make the settings of the YAML file ``path`` the defaults of ``sub`` (options it sets are no longer required;
    values are checked against the options' choices)."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(f"--config {path} cannot be read as YAML ({e})") from e
    defaults = config_defaults(cls, values, path)
    for action in sub._actions:
        if action.dest not in defaults:
            continue
        value = defaults[action.dest] = _typed(action, defaults[action.dest], path)
        if action.choices is not None:
            bad = [
                v for v in (value if isinstance(value, list) else [value]) if v is not None and v not in action.choices
            ]
            if bad:
                raise UsageError(
                    f"{path}: {action.dest.replace(_SEP, '.')} {bad[0]!r} is not one of {list(action.choices)}"
                )
        action.required = False
        if not action.option_strings and action.nargs in (None, "+"):  # a positional the file gives
            action.nargs = "?" if action.nargs is None else "*"
    sub.set_defaults(**defaults)


def write_resolved_config(cfg: Any) -> None:
    """``OUT/config.yaml``: every setting of the run, for ``--config`` to replay it (when the config has an ``out``
    folder and it exists)."""
    import yaml

    out = getattr(cfg, "out", None)
    if not isinstance(out, str) or not Path(out).is_dir():
        return
    plain = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))  # tuples as lists
    text = yaml.safe_dump(plain, sort_keys=False)
    atomic_write(Path(out) / CONFIG_FILE, lambda f: f.write(text.encode()), shared=True)  # every rank may write it


def _subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    sub = parser._subparsers._group_actions[0].choices[args.command]
    if getattr(args, "subcommand", None):
        sub = sub._subparsers._group_actions[0].choices[args.subcommand]
    return sub


def _config_file(argv: Sequence[str]) -> Tuple[Optional[Tuple[str, ...]], Optional[str]]:
    """The command words and the ``--config`` file of a command line, read before parsing (the file may give the
    options argparse would otherwise require)."""
    words = next((w for w in command_table() if tuple(argv[: len(w)]) == w), None)
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return words, argv[i + 1]
        if arg.startswith("--config="):
            return words, arg.split("=", 1)[1]
    return words, None


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    words, config_file = _config_file(argv)
    if words is not None and config_file:
        sub = parser._subparsers._group_actions[0].choices[words[0]]
        if len(words) > 1:
            sub = sub._subparsers._group_actions[0].choices[words[1]]
        try:
            _apply_config_file(sub, command_table()[words].config, config_file)
        except (UsageError, InputError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE if isinstance(e, UsageError) else EXIT_INPUT
    args, unknown = parser.parse_known_args(argv)
    command = COMMANDS[args.command]
    if isinstance(command, dict):
        command = command[args.subcommand]
    if unknown:  # said with the usage of the (sub)command they were given to, not the top level's
        _subparser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    root, handler = logging.getLogger(), _log_handler(args.log_level)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(handler.level, old_level or logging.WARNING))
    new_out: Optional[Path] = None
    code = EXIT_INPUT
    try:
        cfg = config_from_args(command.config, args)
        out = getattr(cfg, "out", None)
        new_out = Path(out) if isinstance(out, str) and not os.path.lexists(out) else None
        code = command.run(cfg)
        if code in (0, EXIT_PARTIAL):
            write_resolved_config(cfg)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
        return code
    except Exception as e:
        if args.debug:
            raise
        code, message = _explain(e)
        print(f"error: {message}", file=sys.stderr)
        return code
    finally:
        if new_out is not None and code not in (0, EXIT_PARTIAL):
            _remove_if_empty(new_out)
        root.removeHandler(handler)
        root.setLevel(old_level)


def _remove_if_empty(folder: Path) -> None:
    """Remove an output folder this run created and a failure left with nothing in it (but its own hidden lock or
    partial files): a failed run leaves no empty folders behind."""
    try:
        entries = list(folder.iterdir())
        if all(e.name.startswith(".") and e.is_file() for e in entries):
            for e in entries:
                e.unlink()
            folder.rmdir()
    except OSError:
        pass


def _explain(e: Exception) -> Tuple[int, str]:
    """Exit code and one line (which may wrap) for an exception reaching the command line."""
    if isinstance(e, KeyError):  # unknown model names carry their own suggestions
        return EXIT_USAGE, str(e.args[0]) if e.args else repr(e)
    if isinstance(e, UsageError):
        return EXIT_USAGE, str(e)
    from .infer.config import in_cli_terms

    message = in_cli_terms(str(e))
    if isinstance(e, OSError) and e.filename:
        message = f"{e.strerror or e}: {e.filename}"
    if isinstance(e, (ValueError, OSError, RuntimeError, pickle.UnpicklingError)):  # input errors (ours subclass these)
        return EXIT_INPUT, message
    return EXIT_INPUT, f"{type(e).__name__}: {message} (an unexpected error; rerun with --debug for the traceback)"
