from django.apps import AppConfig


class AuditLogConfig(AppConfig):
    # The label stays "audit": the tables, migrations and permissions keep their names.
    name = "pjd_portal.auditlog"
    label = "audit"
    verbose_name = "Access log"
