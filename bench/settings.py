"""The portal's settings, plus what only the benchmark needs: `/hello` (bench/urls.py) and
the round-trip counter (bench/middleware.py). Everything else is the production setup the
environment describes (bench/run.py sets it)."""

from pjd_portal.settings import *  # noqa: F403
from pjd_portal.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
# Outermost, so that it counts what every other middleware sends too (the session's
# read and save, the user's load).
MIDDLEWARE = ["bench.middleware.RoundTripMiddleware", *MIDDLEWARE]
ROOT_URLCONF = "bench.urls"
