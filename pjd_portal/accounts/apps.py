from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "pjd_portal.accounts"
    label = "accounts"
