"""Importing this package registers every layer family."""
from . import activation, attention, conv, elementwise, embedding, linear, norm, pool, tensor_math, tensor_ops  # noqa: F401
