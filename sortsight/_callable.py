"""Keep ``sortsight.train(...)``, ``sortsight.evaluate(...)``, ... callable in every import order.

The package re-exports a few functions under the same names as their modules (``train`` in
``train.py``). Importing such a module makes Python bind the *module* to ``sortsight.<name>``,
which would shadow the function. Giving the module a ``__call__`` that forwards to the function
makes both readings work.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["make_module_callable"]


def make_module_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Let the module ``module_name`` be called as ``function``."""

    class _CallableModule(types.ModuleType):
        __doc__ = function.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
