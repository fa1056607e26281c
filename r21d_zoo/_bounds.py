"""Valid ranges of numeric config fields, declared once in the field's metadata (``bound=at_least(1)``) and checked
when a config is made (:class:`Checked`), so the Python API and the command line refuse an impossible number before
any work, naming the field and its option."""

import dataclasses
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Iterable, List, Optional, Tuple

from ._errors import UsageError


@dataclass(frozen=True)
class Bound:
    """``low <= value <= high`` (``<`` where that end is open; None: no limit), and finite."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: Real) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        if self.low is None:
            return f"{'below' if self.high_open else 'at most'} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def at_least(low: float) -> Bound:
    return Bound(low)


def above(low: float) -> Bound:
    return Bound(low, low_open=True)


def between(low: float, high: float, *, high_open: bool = False) -> Bound:
    return Bound(low, high, high_open=high_open)


def option_flags(f: dataclasses.Field) -> Tuple[str, ...]:
    """The command-line flags of a config field: its metadata's ``flag`` (one or several), else ``--field-name``."""
    flags = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    return (flags,) if isinstance(flags, str) else tuple(flags)


def option_name(f: dataclasses.Field) -> str:
    """The long flag of a config field, as errors name it."""
    return max(option_flags(f), key=len)


def _values(value: Any) -> Iterable[Any]:
    return value if isinstance(value, (list, tuple)) else [value]


def _numbers(value: Any) -> Iterable[Real]:
    return [v for v in _values(value) if isinstance(v, Real) and not isinstance(v, bool)]


def field_problems(f: dataclasses.Field, value: Any) -> List[str]:
    """What is wrong with ``value`` for the field ``f`` (nothing for None: an unset optional). Every number must be
    finite (a NaN mean would make every feature NaN), and within the field's bound if it has one."""
    bound: Optional[Bound] = f.metadata.get("bound")
    if value is None:
        return []
    bad = [v for v in _numbers(value) if not (bound.admits(v) if bound is not None else math.isfinite(v))]
    if not bad:
        return []
    shown = value if isinstance(value, (list, tuple)) else bad[0]
    must = f"must be {bound}" if bound is not None else "must be a finite number"
    return [f"{option_name(f)} {' '.join(map(str, _values(shown)))}: {f.name} {must}"]


def problems(config: Any) -> List[str]:
    """Every bound the config's own fields break; a dict field whose metadata names ``entries`` (a dataclass) is
    checked against that dataclass's fields (the clip overrides against :class:`ClipSpec`). Nested configs check
    themselves when they are made."""
    found = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        entries = f.metadata.get("entries")
        if entries is not None and isinstance(value, dict):
            by_name = {e.name: e for e in dataclasses.fields(entries)}
            for key, v in value.items():
                if key in by_name:
                    found += field_problems(by_name[key], v)
        else:
            found += field_problems(f, value)
    return found


class Checked:
    """A config dataclass that refuses out-of-range numbers when it is made (a :class:`UsageError`, exit 2)."""

    def __post_init__(self) -> None:
        found = problems(self)
        if found:
            raise UsageError("; ".join(found))
