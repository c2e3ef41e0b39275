"""The package version, which is also the default tag of the images it starts."""

__version__ = "0.1.0"
