"""django-two-factor-auth's views, for the tests that select this urlconf."""

from django.http import HttpResponse
from django.urls import include, path
from two_factor.urls import urlpatterns as two_factor_urls

urlpatterns = [
    path("", include(two_factor_urls)),
    path("home/", lambda request: HttpResponse(f"hello {request.user.get_username()}"),
         name="home"),
]
