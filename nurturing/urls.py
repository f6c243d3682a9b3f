from django.urls import path, re_path

from . import views

app_name = "nurturing"
urlpatterns = [
    path("", views.sequence_list, name="sequence_list"),
    path("new/", views.sequence_edit, name="sequence_new"),
    path("<int:pk>/", views.sequence_detail, name="sequence_detail"),
    path("<int:pk>/edit/", views.sequence_edit, name="sequence_edit"),
    re_path(r"^(?P<pk>\d+)/status/(?P<status>active|paused|draft)/$", views.sequence_status, name="sequence_status"),
    path("<int:pk>/steps/new/", views.step_edit, name="step_new"),
    path("<int:pk>/steps/<int:step_pk>/", views.step_edit, name="step_edit"),
    path("<int:pk>/steps/<int:step_pk>/delete/", views.step_delete, name="step_delete"),
    path("<int:pk>/steps/<int:step_pk>/preview/", views.step_preview, name="step_preview"),
    path("<int:pk>/steps/<int:step_pk>/send-test/", views.step_send_test, name="step_send_test"),
    path("<int:pk>/steps/<int:step_pk>/variants/new/", views.variant_edit, name="variant_new"),
    path("<int:pk>/steps/<int:step_pk>/variants/<int:variant_pk>/", views.variant_edit, name="variant_edit"),
    path("<int:pk>/steps/<int:step_pk>/variants/<int:variant_pk>/delete/", views.variant_delete, name="variant_delete"),
    path("enrol/<int:pk>/", views.contact_enrol, name="contact_enrol"),
]
