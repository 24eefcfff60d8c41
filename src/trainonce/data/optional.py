"""Import optional dependencies with an error that names the extra to install.

Used by the data, zoo, report and export modules, which all need packages outside core torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, purpose: str, extra: str = "cli") -> ModuleType:
    """Import ``module`` or raise ImportError naming ``pip install 'trainonce[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = module.split(".")[0]
        raise ImportError(
            f"{purpose} needs the optional package '{pkg}' ({exc}); "
            f"install it with: pip install 'trainonce[{extra}]'"
        ) from exc
