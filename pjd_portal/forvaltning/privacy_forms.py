"""The privacy officer's forms: the lookup, and every change's patient request (its
reference, date and reason) with what it registers, lifts or blocks."""

from __future__ import annotations

import datetime
import re
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from pjd_portal.forvaltning import privacy_services as services
from pjd_portal.patients.forms import NationalIdField
from pjd_portal.patients.models import PrivacyChoiceKind

HPR_NUMBER = re.compile(r"^[0-9]{9}$")


def _date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date", "class": "ds-input"}, format="%Y-%m-%d")


class PrivacyLookupForm(forms.Form):
    national_id = NationalIdField(
        label=_("The patient's national identity number"),
        error_messages={"required": _("Enter the patient's national identity number.")},
        widget=forms.TextInput,
    )


class PatientRequestForm(forms.Form):
    """The patient's request behind every change: reference, date and reason."""

    reference = forms.CharField(
        label=_("Reference of the request"),
        help_text=_("For example the case number of the patient's request."),
        max_length=100,
        error_messages={
            "required": _("Enter the reference of the patient's request."),
            "max_length": _("The reference can be at most %(limit_value)d characters."),
        },
        widget=forms.TextInput(attrs={"class": "ds-input", "autocomplete": "off"}),
    )
    request_date = forms.DateField(
        label=_("Date of the request"),
        help_text=_("The day the patient made the request (dd.mm.yyyy)."),
        input_formats=["%Y-%m-%d", "%d.%m.%Y"],
        error_messages={
            "required": _("Enter the date of the patient's request."),
            "invalid": _("Enter the date of the request as dd.mm.yyyy."),
        },
        widget=_date_input(),
    )
    reason = forms.CharField(
        label=_("Reason"),
        help_text=_("Why the change is made, as the patient stated it."),
        max_length=2000,
        error_messages={
            "required": _("Write the reason for the change."),
            "max_length": _("The reason can be at most %(limit_value)d characters."),
        },
        widget=forms.Textarea(attrs={"class": "ds-input", "rows": 2}),
    )

    def clean_request_date(self) -> datetime.date:
        value: datetime.date = self.cleaned_data["request_date"]
        if value > timezone.localdate():
            raise forms.ValidationError(_("The date of the request cannot be in the future."))
        return value

    def patient_request(self) -> services.PatientRequest:
        return services.PatientRequest(
            reference=self.cleaned_data["reference"],
            request_date=self.cleaned_data["request_date"],
            reason=self.cleaned_data["reason"],
        )


class RegisterChoiceForm(PatientRequestForm):
    kind = forms.ChoiceField(
        label=_("What the patient asks for"),
        choices=PrivacyChoiceKind.choices,
        error_messages={
            "required": _("Choose what to register."),
            "invalid_choice": _("Choose what to register."),
        },
        widget=forms.RadioSelect,
    )
    blocked_hpr_number = forms.CharField(
        label=_("HPR number of the clinician to block"),
        help_text=_("9 digits. Only when blocking a clinician."),
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"class": "ds-input", "inputmode": "numeric", "autocomplete": "off"}),
    )
    field_order = ["kind", "blocked_hpr_number", "reference", "request_date", "reason"]

    def clean_blocked_hpr_number(self) -> str:
        return "".join(self.cleaned_data["blocked_hpr_number"].split())

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, hpr = data.get("kind"), data.get("blocked_hpr_number", "")
        if kind == PrivacyChoiceKind.BLOCKED_CLINICIAN:
            if not hpr:
                self.add_error("blocked_hpr_number", _("Enter the HPR number of the clinician to block."))
            elif not HPR_NUMBER.match(hpr):
                self.add_error("blocked_hpr_number", _("An HPR number has 9 digits. Check the number."))
        elif kind and hpr:
            self.add_error(
                "blocked_hpr_number",
                _(
                    "An HPR number is given only when blocking a clinician. Remove it, or choose a blocked clinician."
                ),
            )
        return data


class LiftChoiceForm(PatientRequestForm):
    choice = forms.IntegerField(widget=forms.HiddenInput)


class DocumentBlockForm(PatientRequestForm):
    document = forms.UUIDField(widget=forms.HiddenInput)
