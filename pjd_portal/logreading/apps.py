from django.apps import AppConfig


class LogReadingConfig(AppConfig):
    name = "pjd_portal.logreading"
    label = "logreading"
