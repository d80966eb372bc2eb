from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "pjd_portal.documents"
    label = "documents"
