"""The package version, in one place below every room."""

__version__ = "0.1.0"
