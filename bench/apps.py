from django.apps import AppConfig


class BenchConfig(AppConfig):
    # An app only so that its management commands are found under bench.settings.
    name = "bench"
    label = "bench"
