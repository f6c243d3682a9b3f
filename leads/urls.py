from django.urls import path, re_path

from . import audit_views, handoff_views, report_views, views

app_name = "leads"
urlpatterns = [
    path("queue/", handoff_views.queue, name="queue"),
    re_path(
        r"^leads/(?P<pk>\d+)/(?P<action>accept|reject|claim|feedback|outcome|reassign)/$",
        handoff_views.lead_action,
        name="lead_action",
    ),
    path("contacts/", views.contact_list, name="contact_list"),
    path("contacts/<int:pk>/", views.contact_detail, name="contact_detail"),
    path("accounts/", views.account_list, name="account_list"),
    path("accounts/<int:pk>/", views.account_detail, name="account_detail"),
    path("activity-types/", views.activity_type_list, name="activity_type_list"),
    path("imports/", views.import_list, name="import_list"),
    path("imports/new/", views.import_upload, name="import_upload"),
    path("imports/<int:pk>/", views.import_detail, name="import_detail"),
    path("imports/<int:pk>/mapping/", views.import_mapping, name="import_mapping"),
    path("imports/<int:pk>/start/", views.import_start, name="import_start"),
    path("imports/<int:pk>/progress/", views.import_progress, name="import_progress"),
    path("imports/<int:pk>/rejected.csv", views.import_rejected_csv, name="import_rejected_csv"),
    path("reports/", report_views.report, name="report"),
    path("reports/<slug:table>.csv", report_views.report_csv, name="report_csv"),
    path("reports/costs/", report_views.cost_list, name="cost_list"),
    path("reports/costs/<int:pk>/edit/", report_views.cost_edit, name="cost_edit"),
    path("reports/costs/<int:pk>/delete/", report_views.cost_delete, name="cost_delete"),
    path("audit/", audit_views.audit_log, name="audit_log"),
]
