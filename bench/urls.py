"""The portal's routes and `/hello`, the floor every other request is measured against."""

from django.urls import path

from bench import views
from pjd_portal.urls import handler400, handler403, handler404, handler500, urlpatterns

urlpatterns = [path("hello", views.hello, name="bench_hello"), *urlpatterns]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
