from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from pjd_portal.patients.lookup import read_national_id
from pjd_portal.patients.national_id import InvalidNationalId, NationalId

# What a national id that does not parse is told, by InvalidNationalId.code: one wording for
# every lookup (the clinician's, the privacy officer's, innsyn, the log review).
NATIONAL_ID_MESSAGES = {
    "format": _("A national identity number has 11 digits. Check the number and try again."),
    "checksum": _("The number is not a valid national identity number (check digits do not match)."),
    "date": _("The number does not contain a valid date of birth."),
    "synthetic_not_allowed": _("Synthetic test numbers are not accepted here."),
}
NO_SUCH_PATIENT = _("No patient with this national identity number was found.")


class NationalIdField(forms.CharField):
    """A national id typed by a person: spaces are dropped, the one parser decides
    (`patients.lookup.read_national_id`, honouring PJD_ALLOW_SYNTHETIC_IDS), and the cleaned
    value is the parsed `NationalId` (None when empty and not required). A refusal carries
    the parser's code as the error's code, so the view can log why without the number."""

    default_error_messages = {**forms.CharField.default_error_messages, **NATIONAL_ID_MESSAGES}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 20)
        kwargs.setdefault("help_text", _("11 digits: fødselsnummer, D-number or H-number."))
        kwargs.setdefault(
            "widget",
            forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric", "class": "ds-input"}),
        )
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str:
        return "".join(str(super().to_python(value)).split())

    def clean(self, value: Any) -> NationalId | None:
        # CharField's checks first (required, max_length: Django's own messages, nothing
        # to log), then the parser.
        text: str = super().clean(value)
        if text in self.empty_values:
            return None
        parsed = read_national_id(text)
        if isinstance(parsed, InvalidNationalId):
            code = parsed.code if parsed.code in NATIONAL_ID_MESSAGES else "format"
            raise forms.ValidationError(self.error_messages[code], code=code)
        return parsed


def entered_national_id(form: forms.Form, name: str = "national_id") -> NationalId | InvalidNationalId | None:
    """What a form's NationalIdField came to: the parsed number, the parser's refusal (for
    the caller's event; the form already carries its message), or None when the field is
    empty or refused by Django's own checks (nothing to log)."""

    form.is_valid()
    if name in form.cleaned_data:
        value: NationalId | None = form.cleaned_data[name]
        return value
    for error in form.errors.as_data().get(name, []):
        if error.code in NATIONAL_ID_MESSAGES:
            return InvalidNationalId(error.code)
    return None


class PatientLookupForm(forms.Form):
    national_id = NationalIdField(label=_("National identity number"))
