from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

# What a national id that does not parse is told, by InvalidNationalId.code: one wording for
# every lookup (the clinician's, the privacy officer's, innsyn, the log review).
NATIONAL_ID_MESSAGES = {
    "format": _("A national identity number has 11 digits. Check the number and try again."),
    "checksum": _("The number is not a valid national identity number (check digits do not match)."),
    "date": _("The number does not contain a valid date of birth."),
    "synthetic_not_allowed": _("Synthetic test numbers are not accepted here."),
}
NO_SUCH_PATIENT = _("No patient with this national identity number was found.")


def national_id_message(code: str) -> str:
    return str(NATIONAL_ID_MESSAGES.get(code, NATIONAL_ID_MESSAGES["format"]))


class PatientLookupForm(forms.Form):
    national_id = forms.CharField(
        label=_("National identity number"),
        max_length=20,
        help_text=_("11 digits: fødselsnummer, D-number or H-number."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric", "class": "ds-input"}),
    )
