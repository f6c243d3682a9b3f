from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "leads"
    verbose_name = "Leads: accounts, contacts, activities"

    def ready(self):
        from . import schema  # noqa: F401  (registers the OpenAPI schema extensions)
