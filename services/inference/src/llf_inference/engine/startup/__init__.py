"""The directory llf puts first on every engine's ``PYTHONPATH``: its ``sitecustomize`` runs at
the start of each engine process (see ``sitecustomize.py``); nothing here is imported by llf."""
