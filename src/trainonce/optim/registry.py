"""Names of the ZIG optimizers (the CLI's ``--optimizer`` choices) mapped to their classes; a new
optimizer is one `register_optimizer` call away from the command line.
"""

from __future__ import annotations

from .ato import ATO
from .base import ZigOptimizer
from .dhspg import DHSPG
from .h2spg import H2SPG
from .hesso import HESSO
from .hesso_cric import HESSOCRIC
from .hspg import HSPG

OPTIMIZERS: dict[str, type[ZigOptimizer]] = {}


def register_optimizer(name: str, cls: type[ZigOptimizer]) -> None:
    """Make ``cls`` available as ``name``. It is built as ``cls(space, lr=..., variant=...,
    momentum=..., weight_decay=..., total_steps=..., target_...=...)``, plus ``loss_fn=`` when
    it sets ``needs_loss_fn = True``."""
    if not (isinstance(cls, type) and issubclass(cls, ZigOptimizer)):
        raise TypeError(f"{cls!r} is not a ZigOptimizer subclass")
    if OPTIMIZERS.get(name, cls) is not cls:
        raise ValueError(f"optimizer name {name!r} is taken by {OPTIMIZERS[name].__name__}")
    OPTIMIZERS[name] = cls


def optimizer_class(name: str) -> type[ZigOptimizer]:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name]


for _name, _cls in (
    ("hesso", HESSO),
    ("hesso-cric", HESSOCRIC),
    ("dhspg", DHSPG),
    ("hspg", HSPG),
    ("ato", ATO),
    ("h2spg", H2SPG),
):
    register_optimizer(_name, _cls)
