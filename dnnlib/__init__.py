"""Small helpers shared across the project (attribute dicts, errors, cached URL opening)."""

from .util import EasyDict

__all__ = ["EasyDict"]
