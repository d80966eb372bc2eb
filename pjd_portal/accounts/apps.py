from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "pjd_portal.accounts"
    label = "accounts"

    def ready(self) -> None:
        # The user_logged_in receiver that stamps the session's login time.
        # The receivers that move a person's facts_version on (accounts/facts.py).
        from pjd_portal.accounts import facts, sessions  # noqa: F401, PLC0415
