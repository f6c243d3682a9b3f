from django.urls import path, register_converter

from . import tuning_views, views


class RuleKindConverter:
    regex = "fit|engagement|level"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(RuleKindConverter, "rulekind")

app_name = "scoring"
urlpatterns = [
    path("", views.model_overview, name="overview"),
    path("models/<int:model_pk>/draft/", views.draft_create, name="draft_create"),
    path("versions/<int:pk>/", views.version_detail, name="version_detail"),
    path("versions/<int:pk>/settings/", views.version_settings, name="version_settings"),
    path("versions/<int:pk>/<rulekind:kind>/new/", views.rule_edit, name="rule_new"),
    path("versions/<int:pk>/<rulekind:kind>/<int:rule_pk>/", views.rule_edit, name="rule_edit"),
    path("versions/<int:pk>/<rulekind:kind>/<int:rule_pk>/delete/", views.rule_delete, name="rule_delete"),
    path("versions/<int:pk>/preview/", views.version_preview, name="version_preview"),
    path(
        "versions/<int:pk>/preview/<int:preview_pk>/progress/",
        views.version_preview_progress,
        name="version_preview_progress",
    ),
    path("versions/<int:pk>/publish/", views.version_publish, name="version_publish"),
    path("compare/", views.version_compare, name="version_compare"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/progress/", views.run_progress, name="run_progress"),
    path("versions/<int:pk>/discard/", tuning_views.draft_discard, name="draft_discard"),
    path("versions/<int:pk>/performance/", tuning_views.version_performance, name="version_performance"),
    path("models/<int:model_pk>/suggest/", tuning_views.suggestion_new, name="suggestion_new"),
    path("suggestions/<int:pk>/", tuning_views.suggestion_detail, name="suggestion_detail"),
    path("suggestions/<int:pk>/progress/", tuning_views.suggestion_progress, name="suggestion_progress"),
]
