"""Optional imports: every third-party module may be missing or broken."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Dict, Optional, Tuple

OPTIONAL = ("torch", "numpy", "xformers", "pynvml", "triton")


class Deps:
    """Lazily imported optional modules, with the reason for any that failed."""

    def __init__(self) -> None:
        self._mods: Dict[str, Any] = {}
        self.errors: Dict[str, str] = {}

    def get(self, name: str) -> Optional[Any]:
        if name not in self._mods:
            self._mods[name], error = try_import(name)
            if error:
                self.errors[name] = error
        return self._mods[name]

    def reason(self, name: str) -> str:
        self.get(name)
        return f"{name} not importable ({self.errors.get(name, 'unknown error')})"


def try_import(name: str) -> Tuple[Optional[Any], str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name), ""
    except Exception as exc:  # ImportError, but also broken builds (OSError, RuntimeError)
        return None, one_line(exc)


def one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def version_of(module: Any) -> Optional[str]:
    value = getattr(module, "__version__", None) if module is not None else None
    return str(value) if value is not None else None
