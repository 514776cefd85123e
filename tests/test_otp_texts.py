"""The texts of one-time codes: every shipped translation fits one SMS in either alphabet, and a
site name too long for that is shortened, never the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import translation

from mobilgroup_backends.django.codes import ONE_SMS, code_text, notice_text
from mobilgroup_backends.emulator.codes import find_code
from mobilgroup_backends.errors import ValidationError
from mobilgroup_backends.protocol import MAX_TEXT_UNICODE, check_text

LOCALE = Path(__file__).resolve().parent.parent / "mobilgroup_backends" / "django" / "locale"
SHIPPED = sorted(path.name for path in LOCALE.iterdir() if (path / "LC_MESSAGES").is_dir())
# A site name as long as people's usually are, and the longest code and validity the plug
# points make (allauth's numeric codes: 11 characters with dashes).
SITE = "shop.example.com"
CODE = "123-456-789"


def test_russian_and_english_ship_compiled() -> None:
    assert {"ru", "en"} <= set(SHIPPED)
    for language in SHIPPED:
        assert (LOCALE / language / "LC_MESSAGES" / "django.mo").is_file()


@pytest.mark.parametrize("language", SHIPPED)
def test_every_text_fits_one_sms_in_either_alphabet(language: str) -> None:
    with translation.override(language):
        texts = [code_text(CODE, minutes=15, site=SITE), code_text(CODE, minutes=15, site=""),
                 notice_text("unknown_account", site=SITE), notice_text("account_exists", site=SITE),
                 notice_text("unknown_account", site=""), notice_text("account_exists", site="")]
    for text in texts:
        # Unicode is the tighter limit (the gateway's rus_sms=1); transliterated texts get more.
        check_text(text, transliterate=False)
        assert SITE in text or "{" not in text
    assert find_code(texts[0]) == CODE


def test_russian_is_russian() -> None:
    with translation.override("ru"):
        assert code_text("4821", minutes=5, site="Магазин") == \
            "4821 — ваш код Магазин. Действует 5 мин."


def test_a_long_site_name_is_shortened_and_the_code_kept() -> None:
    text = code_text("987654", minutes=5, site="A very long name of a site " * 5)
    assert len(text) <= ONE_SMS == MAX_TEXT_UNICODE
    assert text.startswith("987654 is your A very long")


def test_a_template_too_long_for_one_sms_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="more than one SMS"):
        code_text("987654", minutes=5, site="", template="{code} " + "x" * 80)
