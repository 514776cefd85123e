"""A minimal Django project for the Django adapter's tests."""
