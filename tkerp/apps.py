from django.apps import AppConfig


class TkerpConfig(AppConfig):
    name = "tkerp"
    verbose_name = "tkerp"
