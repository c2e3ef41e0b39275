"""llf web: the stack's own pages (chat, models, status) in front of the gateway and the registry."""

__version__ = "0.1.0"
