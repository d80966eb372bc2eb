from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "pjd_portal.review"
    label = "review"
