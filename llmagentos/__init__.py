"""LLMAgentOS: the Django project package (settings, urls, ASGI entry point).

Named ``llmagentos`` and not ``platform``: a top-level package called
``platform`` would shadow the standard library module that ``uuid`` imports.
"""

from apps.core.version import VERSION  # noqa: F401  (the version, defined once)
