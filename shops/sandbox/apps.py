from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "shops.sandbox"
    label = "sandbox"
    verbose_name = "Platform sandboxes"
