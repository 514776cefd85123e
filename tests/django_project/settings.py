"""Settings of the test project: SQLite, both SMS packages, the mobilgroup app, Django Tasks.

``MOBILGROUP`` is left unset here: each test gives its own with ``override_settings`` (usually the
emulator's URL), so that nothing in this file can reach a real gateway.

Subprocesses the tests start (task workers, the sweeper, trackers) get what they need through
``TESTS_*`` variables: the database to share with the test (``TESTS_DATABASE``, JSON of Django's
database settings), the ``MOBILGROUP`` setting (``TESTS_MOBILGROUP``), the task backend
(``TESTS_TASK_BACKEND``) and the caches (``TESTS_CACHES``, JSON of Django's ``CACHES``).
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib.util import find_spec

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "sms",
    "sendsms",
    "mobilgroup_backends.django",
    "django_tasks_db",
]
# Django 6 has the Tasks framework built in; 5.2 takes it from the django-tasks backport.
TASKS_PACKAGE = "django.tasks" if find_spec("django.tasks") else "django_tasks"
if TASKS_PACKAGE == "django_tasks":
    INSTALLED_APPS.append("django_tasks")

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

# The one-time code frameworks (the otp extra). Their views are reached only through the
# urlconfs of tests/django_project/otp_urls.py, selected per test; the gateway settings
# (TWO_FACTOR_SMS_GATEWAY, ACCOUNT_ADAPTER) are set per test too.
if find_spec("two_factor") and find_spec("allauth"):
    INSTALLED_APPS += [
        "formtools",
        "django_otp",
        "django_otp.plugins.otp_static",
        "django_otp.plugins.otp_totp",
        "two_factor",
        "two_factor.plugins.phonenumber",
        "mobilgroup_backends.django.otp",
        "allauth",
        "allauth.account",
    ]
    MIDDLEWARE += ["django_otp.middleware.OTPMiddleware",
                   "allauth.account.middleware.AccountMiddleware"]
    # django-two-factor-auth would otherwise replace every admin site's login, other tests' too.
    TWO_FACTOR_PATCH_ADMIN = False
    AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend",
                               "allauth.account.auth_backends.AuthenticationBackend"]

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

ROOT_URLCONF = "tests.django_project.urls"
# Where the admin's pages link their stylesheets (the admin's browser test serves them there).
STATIC_URL = "static/"

# A file, not memory: the tracking tests run two `track` runs in threads at once, and SQLite's
# shared in-memory databases lock whole tables instead of waiting.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",  # only subprocesses of the tests use this, and not for data
        "OPTIONS": {"timeout": 30},
        "TEST": {
            "NAME": os.path.join(tempfile.gettempdir(),
                                 f"mobilgroup-tests-{os.getpid()}-test.sqlite3"),
        },
    },
}
if "TESTS_DATABASE" in os.environ:
    DATABASES["default"] = json.loads(os.environ["TESTS_DATABASE"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TASKS = {"default": {"BACKEND": os.environ.get(
    "TESTS_TASK_BACKEND", f"{TASKS_PACKAGE}.backends.immediate.ImmediateBackend")}}

if "TESTS_MOBILGROUP" in os.environ:
    MOBILGROUP = json.loads(os.environ["TESTS_MOBILGROUP"])
if "TESTS_CACHES" in os.environ:
    CACHES = json.loads(os.environ["TESTS_CACHES"])

SMS_BACKEND = "mobilgroup_backends.django.SmsBackend"
SENDSMS_BACKEND = "mobilgroup_backends.django.SmsBackend"

# What the docs recommend when MOBILGROUP["URL"] carries the password (check mobilgroup.W012).
DEFAULT_EXCEPTION_REPORTER_FILTER = "mobilgroup_backends.django.debug.SafeExceptionReporterFilter"

# Django's advice for test suites: a fast hasher. The default one costs a quarter of a second of
# CPU per password by design; these passwords guard nothing, and the hashing is Django's own.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
