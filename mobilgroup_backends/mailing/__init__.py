"""Mailings: one text, or a personalised one, to a list of people from a CSV file, sent exactly
once however often the sending is interrupted.

- :mod:`.contacts` reads the CSV and checks the template's fields;
- :mod:`.plan` checks and renders every row and groups identical texts into requests;
- :mod:`.state` keeps every request's id and outcome in a SQLite file;
- :mod:`.engine` sends what is not accepted yet, concurrently, and fetches the reports.

``mobilgroup mailing send|report`` is the command line over these.
"""

from __future__ import annotations

from .contacts import Contacts, read_contacts
from .engine import Outcome, RunSummary, fetch_reports, send_mailing
from .plan import BATCH_SIZE, BadRows, MailingOptions, Plan, make_plan
from .state import MailingState, default_state_path

__all__ = [
    "BATCH_SIZE",
    "BadRows",
    "Contacts",
    "MailingOptions",
    "MailingState",
    "Outcome",
    "Plan",
    "RunSummary",
    "default_state_path",
    "fetch_reports",
    "make_plan",
    "read_contacts",
    "send_mailing",
]
