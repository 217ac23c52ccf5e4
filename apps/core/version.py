"""The platform's version: plugins declare the range they support against it."""

VERSION = "0.1.0"
