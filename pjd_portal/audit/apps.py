from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "pjd_portal.audit"
    label = "audit"
