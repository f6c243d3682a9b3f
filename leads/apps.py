from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "leads"
    verbose_name = "Leads: accounts, contacts, activities"

    def ready(self):
        import config.lookups  # noqa: F401  (registers `__any_of`)

        from . import schema  # noqa: F401  (registers the OpenAPI schema extensions)
