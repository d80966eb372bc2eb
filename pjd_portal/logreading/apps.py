from django.apps import AppConfig


class LogReadingConfig(AppConfig):
    name = "pjd_portal.logreading"
    label = "logreading"
    verbose_name = "Log reading (risk signals as they were)"
