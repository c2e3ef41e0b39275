"""``make up`` / ``make down`` / ``make logs``: one command for three situations.

With a reachable Docker engine the stack runs under Compose (GPU target when NVIDIA is usable
by Docker, CPU target otherwise); without one, the same services run as local processes from
the repo's venvs under supervisord, which restarts them the way Compose's restart policy would.
In every mode the script then waits for the services, makes sure a model is present (pulled,
or the random-weights demo model when no hub is reachable), asks the gateway to serve it and
points the ``llf`` CLI at it.
"""
