from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from pjd_portal.access.models import Basis


class PatientLookupForm(forms.Form):
    national_id = forms.CharField(
        label=_("National identity number"),
        max_length=20,
        help_text=_("11 digits: fødselsnummer, D-number or H-number."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric", "class": "ds-input"}),
    )


class BasisForm(forms.Form):
    basis = forms.ChoiceField(
        label=_("Basis for access"),
        choices=Basis.choices,
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=2000,
        help_text=_("Required for emergency and elevated access: write at least one sentence."),
        widget=forms.Textarea(attrs={"rows": 3, "class": "ds-input"}),
    )
