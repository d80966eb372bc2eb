"""The clinician's forms for stating a basis for access."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from pjd_portal.access.models import Basis

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
