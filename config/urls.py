from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from leads import views as lead_views

urlpatterns = [
    path("", lead_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("leads.urls")),
    path("scoring/", include("scoring.urls")),
    path("sequences/", include("nurturing.urls")),
    path("e/", include("nurturing.public_urls")),
    path("api/", include("leads.api_urls")),
    path("api/", include("scoring.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]

handler404 = "config.errors.not_found"
