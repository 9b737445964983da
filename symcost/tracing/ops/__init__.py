"""The built-in op records (``handlers``), one module per family of ops: each aten op's cost handler and shape rule,
and its backward kernel's, side by side.  Importing this package registers them all."""
from . import movement, norms, pointwise, products, reductions, resize, views, windows  # noqa: F401  (registers)
