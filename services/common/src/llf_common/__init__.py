"""Shared core of the llf services."""

__version__ = "0.1.0"
