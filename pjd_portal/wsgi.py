import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pjd_portal.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # The settings refused this environment (settings.py, the last block): one line for
    # the operator, and no worker that serves.
    print(f"pjd-portal refuses to start: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
