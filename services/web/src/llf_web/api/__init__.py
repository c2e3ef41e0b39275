"""Thin routers: the pages, and the few calls the pages make (each forwarded to one service)."""
