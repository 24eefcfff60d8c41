"""Sub-network construction: cut zero ZIGs out of the model and verify the result."""

from .construct import SubnetMismatchError, construct_subnet

__all__ = ["SubnetMismatchError", "construct_subnet"]
