"""The package version (a module of its own, so that torch-free modules can read it)."""
__version__ = "0.1.0"
