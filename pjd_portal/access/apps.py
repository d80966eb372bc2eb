from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "pjd_portal.access"
    label = "access"
