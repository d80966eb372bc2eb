"""The clinician's forms for stating a basis for access."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from pjd_portal.access.models import Basis

ORDINARY_BASES = [(b.value, b.label) for b in (Basis.UNNTAK, Basis.SAMTYKKE, Basis.AKUTT)]
ELEVATED_BASES = [(b.value, b.label) for b in (Basis.FORHOYET_SAMTYKKE, Basis.FORHOYET_AKUTT)]

# The first step of an emergency opening: what the situation is, from a short list (as
# Sweden's NPÖ asks), then the reason in the clinician's own words.
AKUTT_SITUATIONS = [
    ("unconscious", _("Unconscious or seriously reduced consciousness")),
    ("cannot_communicate", _("Acutely confused or cannot communicate")),
    ("life_threatening", _("Life-threatening condition: no time to ask for consent")),
    ("other", _("Another urgent situation (describe it in the reason)")),
]


class BasisForm(forms.Form):
    # Every ordinary basis validates here, so that one the policy refuses for this patient
    # (UNNTAK for someone else's list patient) is refused, and logged, by the policy; the
    # page offers only the bases `policy.bases_offered` gives. FORHØYET is not among them:
    # it has its own step (ElevatedBasisForm), for a restricted patient only.
    basis = forms.ChoiceField(label=_("Basis for access"), choices=ORDINARY_BASES, widget=forms.RadioSelect)
    situation = forms.ChoiceField(
        label=_("The situation"),
        choices=AKUTT_SITUATIONS,
        required=False,
        widget=forms.RadioSelect,
        help_text=_("For emergency access: what is the situation?"),
    )
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=2000,
        help_text=_("Required for emergency access: write at least one sentence."),
        widget=forms.Textarea(attrs={"rows": 3, "class": "ds-input"}),
    )
    # Set by the confirmation page of an emergency opening (its second step).
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("basis") == Basis.AKUTT and not cleaned.get("situation"):
            self.add_error("situation", _("Choose the situation."))
        return cleaned

    @property
    def awaits_confirmation(self) -> bool:
        """An emergency basis whose first step is filled in, not yet confirmed."""

        return self.cleaned_data.get("basis") == Basis.AKUTT and not self.cleaned_data.get("confirmed")

    def situation_label(self) -> str:
        return str(dict(AKUTT_SITUATIONS).get(self.cleaned_data.get("situation", ""), ""))


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
