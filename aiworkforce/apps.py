from django.apps import AppConfig


class AiWorkforceConfig(AppConfig):
    name = "aiworkforce"
    verbose_name = "Audit trail"
