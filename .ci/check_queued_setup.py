"""The queued Django backend set up exactly as docs/django.md says, in a fresh project.

Run by ``.ci/run`` with the Python of a fresh virtual environment into which it installed
``mobilgroup-backends[django]`` (and a Django version) and nothing else: it starts a project with
``django-admin startproject``, adds the documented settings, runs ``migrate`` and ``check``,
queues a message with django-sms's ``send_sms``, runs ``db_worker --batch`` and counts what the
emulator (on 127.0.0.1) received. It also removes ``django_tasks_db`` from ``INSTALLED_APPS`` and
expects ``manage.py check`` to say so. Argument: an empty folder for the project.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import django

from mobilgroup_backends.emulator import Emulator

PHONE = "79030000000"
TEXT = "Order 1 confirmed"

# The lines docs/django.md ("Sending after the transaction commits") tells a user to add.
DOCUMENTED = """
INSTALLED_APPS = [*INSTALLED_APPS, "mobilgroup_backends.django", "django_tasks_db"]
SMS_BACKEND = "mobilgroup_backends.django.QueuedSmsBackend"
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
"""


def run(project: Path, *args: str, expect_failure: bool = False) -> str:
    """``manage.py ARGS`` in the project; its output. Fails loudly on an unexpected status."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=project, text=True,
                          capture_output=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    if (done.returncode != 0) != expect_failure:
        sys.exit(f"manage.py {' '.join(args)} exited {done.returncode}:\n{output}")
    return output


def main(folder: str) -> None:
    project = Path(folder)
    subprocess.run([sys.executable, "-m", "django", "startproject", "shop", str(project)],
                   check=True, timeout=120)
    settings = project / "shop" / "settings.py"
    with Emulator() as emulator:
        # MOBILGROUP as the docs show it, pointed at the emulator.
        settings.write_text(settings.read_text() + DOCUMENTED
                            + f"MOBILGROUP = {{'URL': {emulator.url()!r}}}\n")
        run(project, "migrate", "--verbosity", "0")
        checked = run(project, "check")
        if "mobilgroup." in checked:
            sys.exit(f"manage.py check complained about the documented set-up:\n{checked}")
        run(project, "shell", "-c", f"import sms; print(sms.send_sms({TEXT!r}, "
                                    f"recipients=[{PHONE!r}]))")
        if emulator.outbox:
            sys.exit("the message went out before a worker ran: it was not queued")
        run(project, "db_worker", "--batch", "--no-startup-delay")
        sent = [(message.phones, message.text) for message in emulator.outbox]
        if sent != [((PHONE,), TEXT)]:
            sys.exit(f"the worker sent {sent!r}, not one message to {PHONE}")

        # The mistake the docs used to lead to: the task backend's app not installed.
        settings.write_text(settings.read_text().replace(', "django_tasks_db"]', "]"))
        complaint = run(project, "check", expect_failure=True)
        if "mobilgroup.E009" not in complaint or "django_tasks_db" not in complaint:
            sys.exit(f"manage.py check missed the task backend's app:\n{complaint}")
    print(f"the documented queued set-up works on Python {sys.version.split()[0]}, "
          f"Django {django.get_version()}")


if __name__ == "__main__":
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    main(sys.argv[1])
