"""The package version, in one place (the user-agent of every delivery carries it)."""

__version__ = "0.1.0"
