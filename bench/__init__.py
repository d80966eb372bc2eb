"""The benchmark harness (`make bench`, `make bench-smoke`): a production-mode portal under
granian, driven by wrk. It lives outside pjd_portal/ because it is no floor of the portal:
nothing in the portal imports it, and its settings, views and middleware exist only here."""
