"""Writes to workspaces and memberships."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction

from .models import Membership, Workspace


@transaction.atomic
def workspace_create(*, slug: str, name: str, owner_username: str) -> Workspace:
    """Create a workspace owned by an existing user."""
    errors: dict[str, list[str]] = {}
    try:
        validate_slug(slug)
    except ValidationError as exc:
        errors["slug"] = exc.messages
    else:
        if Workspace.objects.filter(slug=slug).exists():
            errors["slug"] = [f"A workspace with the slug {slug!r} already exists."]
    if not (name or "").strip():
        errors["name"] = ["A name is required."]
    owner = get_user_model().objects.filter(username=owner_username).first()
    if owner is None:
        errors["owner"] = [f"No user named {owner_username!r}."]
    if errors:
        raise ValidationError(errors)
    workspace = Workspace.objects.create(slug=slug, name=name.strip())
    Membership.objects.create(user=owner, workspace=workspace, role=Membership.Role.OWNER)
    return workspace
