"""Stage 2 of the pipeline: carry channel labels through the traced graph, op by op.

Importing the package registers the built-in op table (`table`) in the op `registry`.
"""

from . import table  # noqa: F401 - registers the built-in rules
