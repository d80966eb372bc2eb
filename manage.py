#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pjd_portal.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - reads the settings: their refusals come here
    except ImproperlyConfigured as exc:
        # One line an operator can act on, not a traceback (settings.py, the last block).
        sys.exit(f"pjd-portal refuses to start: {exc}")
    execute_from_command_line(sys.argv)
