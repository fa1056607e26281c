"""Lazy public names for a package's ``__init__``: ``import r21d_zoo`` (or one of its layers) binds names, and the
module that defines one is imported the first time the name is used, as transformers and timm do. Type checkers
and IDEs read the same names from the ``if TYPE_CHECKING:`` imports beside each table."""

import importlib
from typing import Any, Callable, Dict, List, Tuple


def lazy_exports(package: str, table: Dict[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose public names live in the modules ``table`` names
    (``{"create_model": "._factory"}``; a module path relative to ``package``). Each name is bound in the package
    on first use."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name], package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(set(table) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__
