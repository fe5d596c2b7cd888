from itertools import groupby

from django import forms

from . import event_types as catalogue

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

    def event_type_groups(self) -> list[tuple[str, str, list[tuple[catalogue.EventType, bool]]]]:
        """(group, label, [(event type, checked)]) for the grouped checkboxes."""
        selected = set(self["event_types"].value() or ())
        return [
            (group, GROUP_LABELS[group], [(t, t.name in selected) for t in types])
            for group, types in groupby(catalogue.SUBSCRIBABLE, key=lambda t: t.group)
        ]
