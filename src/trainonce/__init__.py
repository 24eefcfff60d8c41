"""trainonce: train a network once and compress it in the same run.

Pipeline: trace (`torch.export`) -> search space of zero-invariant groups (`analyze`) ->
optimizer that zeroes whole groups while training -> exact slim sub-network (`construct_subnet`).
"""

from . import hf  # trainonce.hf.save_pretrained / from_pretrained (transformers on demand)
from .graph.registry import register_rule
from .io import load, save
from .latency import LatencyTable, measure_latency
from .optim import ATO, DHSPG, H2SPG, HESSO, HESSOCRIC, HSPG
from .runs import load_run
from .space import Group, Member, SearchSpace
from .space.build import NothingPrunableError, analyze
from .subnet import SubnetMismatchError, construct_subnet
from .trace import TraceError

__version__ = "0.1.0"

__all__ = [
    "ATO",
    "DHSPG",
    "H2SPG",
    "HESSO",
    "HESSOCRIC",
    "HSPG",
    "Group",
    "LatencyTable",
    "Member",
    "NothingPrunableError",
    "SearchSpace",
    "SubnetMismatchError",
    "TraceError",
    "__version__",
    "analyze",
    "construct_subnet",
    "hf",
    "load",
    "load_run",
    "measure_latency",
    "register_rule",
    "save",
]
