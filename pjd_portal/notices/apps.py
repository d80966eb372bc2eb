from django.apps import AppConfig


class NoticesConfig(AppConfig):
    name = "pjd_portal.notices"
    label = "notices"
