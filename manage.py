#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmagentos.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        if settings.configured:
            raise  # raised after the settings loaded: keep its traceback
        # The settings could not load (llmagentos/env.py names the variable, the
        # value and the form expected): that line is the whole story for an operator.
        sys.exit(f"ImproperlyConfigured: {exc}")


if __name__ == "__main__":
    main()
