"""django-otp's admin login (username, password, device, challenge, token), for the tests that
select this urlconf."""

from django.urls import path
from django_otp.admin import OTPAdminSite

otp_admin = OTPAdminSite(name="otpadmin")

urlpatterns = [path("otpadmin/", otp_admin.urls)]
