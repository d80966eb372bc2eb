from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class PatientLogForm(forms.Form):
    """The privacy officer's request for a patient's access log (POST only)."""

    national_id = forms.CharField(
        label=_("The patient's national identity number"),
        max_length=20,
        help_text=_("11 digits: fødselsnummer, D-number or H-number."),
        error_messages={"required": _("Enter the patient's national identity number.")},
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric", "class": "ds-input"}),
    )
    # Where the previous page ended (opaque, signed); empty for the first page.
    cursor = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)
