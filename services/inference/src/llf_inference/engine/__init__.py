"""A vLLM engine as the gateway sees it.

``spec`` says what an engine is (argv and environment, nothing started), ``address`` where one
start listens (a private Unix socket or a loopback port), ``sweep`` removes the socket
directories a killed gateway left, ``process`` runs one (log, exit, process-group stop),
``failure`` reads why it ended. The names below are the package's public surface, so
``from llf_inference.engine import EngineSpec`` keeps working.
"""

from llf_inference.engine.address import EngineAddress
from llf_inference.engine.failure import Failure, classify_failure
from llf_inference.engine.process import EngineProcess, free_port, group_members, stop_all_engines, stop_group
from llf_inference.engine.spec import EngineSpec

__all__ = [
    "EngineAddress",
    "EngineProcess",
    "EngineSpec",
    "Failure",
    "classify_failure",
    "free_port",
    "group_members",
    "stop_all_engines",
    "stop_group",
]
