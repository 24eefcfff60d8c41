"""Import optional dependencies with an error that names the extra to install.

Used by the data, zoo, report and export modules, which all need packages outside core torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def install_hint(extra: str) -> str:
    """How to install an extra: trainonce is not on PyPI, so from a checkout, torch pinned."""
    return f"pip install -c constraints.txt -e '.[{extra}]' in a trainonce checkout"


def require(module: str, purpose: str, extra: str = "cli") -> ModuleType:
    """Import ``module`` or raise ImportError naming the extra to install (`install_hint`)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = module.split(".")[0]
        raise ImportError(
            f"{purpose} needs the optional package '{pkg}' ({exc}); "
            f"install the '{extra}' extra: {install_hint(extra)}"
        ) from exc
