"""inferlog: an observable ML inference service."""

from importlib.metadata import version

__version__ = version("inferlog")
