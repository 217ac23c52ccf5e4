"""A plugin that exists but imports a library that is not installed."""

import llmagentos_no_such_dependency  # noqa: F401
