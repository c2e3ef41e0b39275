"""Repo scripts runnable with ``python -m scripts.<name>`` from the repo root."""
