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
    slug_max = Workspace._meta.get_field("slug").max_length
    name_max = Workspace._meta.get_field("name").max_length
    try:
        validate_slug(slug)
    except ValidationError as exc:
        errors["slug"] = exc.messages
    else:
        if len(slug) > slug_max:
            errors["slug"] = [f"Ensure the slug has at most {slug_max} characters."]
        elif Workspace.objects.filter(slug=slug).exists():
            errors["slug"] = [f"A workspace with the slug {slug!r} already exists."]
    if not (name or "").strip():
        errors["name"] = ["A name is required."]
    elif len(name.strip()) > name_max:
        errors["name"] = [f"Ensure the name has at most {name_max} characters."]
    owner = get_user_model().objects.filter(username=owner_username).first()
    if owner is None:
        errors["owner"] = [f"No user named {owner_username!r}."]
    if errors:
        raise ValidationError(errors)
    workspace = Workspace.objects.create(slug=slug, name=name.strip())
    Membership.objects.create(user=owner, workspace=workspace, role=Membership.Role.OWNER)
    return workspace


@transaction.atomic
def membership_set(*, workspace: Workspace, username: str, role: str) -> Membership:
    """Add the user to the workspace with `role`, or change the role they have."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": [f"Choose one of: {', '.join(Membership.Role.values)}."]})
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ValidationError({"user": [f"No user named {username!r}."]})
    membership, _ = Membership.objects.update_or_create(user=user, workspace=workspace, defaults={"role": role})
    return membership
