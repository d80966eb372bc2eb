from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from pjd_portal.patients.forms import NationalIdField


class PatientLogForm(forms.Form):
    """The privacy officer's request for a patient's access log (POST only)."""

    national_id = NationalIdField(
        label=_("The patient's national identity number"),
        error_messages={"required": _("Enter the patient's national identity number.")},
    )
    # Where the previous page ended (opaque, signed); empty for the first page.
    cursor = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)
