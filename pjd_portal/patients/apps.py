from django.apps import AppConfig


class PatientsConfig(AppConfig):
    name = "pjd_portal.patients"
    label = "patients"
