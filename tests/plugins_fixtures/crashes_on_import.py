"""A plugin whose import fails with its own error."""

raise RuntimeError("boom while importing the crashing plugin")
