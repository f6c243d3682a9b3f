"""Public endpoints that marketing email links to: no login, every one authorised by a signed token."""

from django.urls import path

from . import public_views

app_name = "email"

urlpatterns = [
    path("u/<str:token>/", public_views.unsubscribe, name="unsubscribe"),
    path("o/<str:token>/", public_views.open_pixel, name="open"),
    path("c/<str:token>/", public_views.click, name="click"),
    path("feedback/", public_views.delivery_feedback, name="feedback"),
]
