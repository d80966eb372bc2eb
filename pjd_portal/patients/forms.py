from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from pjd_portal.access.models import Basis

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


ORDINARY_BASES = [(b.value, b.label) for b in (Basis.UNNTAK, Basis.SAMTYKKE, Basis.AKUTT)]
ELEVATED_BASES = [(b.value, b.label) for b in (Basis.FORHOYET_SAMTYKKE, Basis.FORHOYET_AKUTT)]


class BasisForm(forms.Form):
    # FORHØYET is not offered here: it has its own confirmation step (ElevatedBasisForm),
    # reached only when the status pre-check finds a restriction.
    basis = forms.ChoiceField(
        label=_("Basis for access"),
        choices=ORDINARY_BASES,
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=2000,
        help_text=_("Required for emergency and elevated access: write at least one sentence."),
        widget=forms.Textarea(attrs={"rows": 3, "class": "ds-input"}),
    )


class ElevatedBasisForm(forms.Form):
    basis = forms.ChoiceField(
        label=_("Elevated basis"),
        choices=ELEVATED_BASES,
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=2000,
        help_text=_(
            "Why is it necessary to read documents the patient has restricted? Write at least one sentence."
        ),
        widget=forms.Textarea(attrs={"rows": 3, "class": "ds-input"}),
    )
    confirm = forms.BooleanField(
        label=_(
            "I confirm that reading these documents is necessary for the care I give now. "
            "I know the access is flagged for review and the patient is told."
        ),
    )
