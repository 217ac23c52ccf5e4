"""LLMAgentOS: the Django project package (settings, urls, ASGI entry point).

Named ``llmagentos`` and not ``platform``: a top-level package called
``platform`` would shadow the standard library module that ``uuid`` imports.
"""

VERSION = "0.1.0"
