"""Importing this package registers every layer family."""
from . import conv, linear, norm  # noqa: F401
