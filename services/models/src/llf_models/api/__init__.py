"""HTTP routes of the registry: thin translations from requests to ``Registry`` calls."""
