from itertools import groupby

from django import forms
from django.core.exceptions import ValidationError

from . import event_types as catalogue
from . import services

GROUP_LABELS = {"project": "Projects", "task": "Tasks", "client": "Clients", "invoice": "Invoices", "team": "Team"}


class EndpointForm(forms.Form):
    """Parses what a person typed; `endpoints.services` decides what is acceptable."""

    url = forms.CharField(
        label="URL",
        max_length=2048,
        help_text="Your HTTPS endpoint. HTTP is rejected.",
        widget=forms.TextInput(attrs={"inputmode": "url", "placeholder": "https://example.com/webhooks/clientflow"}),
    )
    description = forms.CharField(
        max_length=500, required=False, help_text="Optional: what this endpoint is for.", widget=forms.TextInput
    )
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=[(t.name, t.name) for t in catalogue.SUBSCRIBABLE],
        required=False,  # the service says "Choose at least one event type."
        widget=forms.CheckboxSelectMultiple,
    )

    def clean(self) -> dict:
        """The service's own checks, so that every field's error shows at once."""
        cleaned = super().clean()
        for name, validate in (
            ("url", services.validate_url),
            ("event_types", services.validate_event_types),
            ("description", services.validate_description),
        ):
            if name in cleaned:
                try:
                    validate(cleaned[name])
                except ValidationError as exc:
                    self.add_error(name, exc.message_dict[name])
        return cleaned

    def event_type_groups(self) -> list[tuple[str, str, list[tuple[catalogue.EventType, bool]]]]:
        """(group, label, [(event type, checked)]) for the grouped checkboxes."""
        selected = set(self["event_types"].value() or ())
        return [
            (group, GROUP_LABELS[group], [(t, t.name in selected) for t in types])
            for group, types in groupby(catalogue.SUBSCRIBABLE, key=lambda t: t.group)
        ]


class RotateSecretForm(forms.Form):
    """How long the secret being replaced keeps signing deliveries too."""

    OVERLAP_CHOICES = [
        (0, "None: the current secret stops signing at once"),
        (1, "1 hour"),
        (24, "24 hours"),
        (168, "7 days"),
    ]

    overlap_hours = forms.TypedChoiceField(
        label="Overlap",
        choices=OVERLAP_CHOICES,
        coerce=int,
        initial=24,
        required=False,
        empty_value=24,  # what the API does too when none is given
        widget=forms.RadioSelect,
        help_text="While it lasts, every delivery is signed with both secrets, so your receiver keeps verifying "
        "whichever one it knows until you have switched it to the new one.",
    )
