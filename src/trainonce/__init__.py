"""trainonce: train a network once and compress it in the same run.

Pipeline: trace (`torch.export`) -> search space of zero-invariant groups (`analyze`) ->
optimizer that zeroes whole groups while training -> exact slim sub-network (`construct_subnet`).
"""

from .space import Group, Member, SearchSpace

__version__ = "0.1.0"

__all__ = ["Group", "Member", "SearchSpace", "__version__"]
