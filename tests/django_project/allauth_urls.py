"""django-allauth's account views, for the tests that select this urlconf."""

from django.http import HttpResponse
from django.urls import include, path

urlpatterns = [
    path("accounts/", include("allauth.urls")),
    path("home/", lambda request: HttpResponse(f"hello {request.user.get_username()}"),
         name="home"),
]
