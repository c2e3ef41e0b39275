"""llf-testing: a real OpenAI-compatible LLM (llf's gateway + vLLM) for a test, in a container.

``LlfContainer`` is one container serving one model; ``LlfStack`` is the whole Compose stack;
``pytest -p llf_testing`` gives the ``llf`` and ``llf_openai`` fixtures (see ``llf_testing.plugin``).
"""

from llf_testing.container import LlfContainer, LlfStartError
from llf_testing.stack import LlfStack
from llf_testing.version import __version__

__all__ = ["LlfContainer", "LlfStack", "LlfStartError", "__version__"]
