"""Reads of workspaces and memberships."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet

from .models import Membership, Workspace


def membership_for(*, user: AbstractBaseUser | AnonymousUser, slug: str) -> Membership | None:
    """The user's membership of the workspace `slug`, or None: outsiders and a missing
    workspace look the same."""
    if not user.is_authenticated:
        return None
    return Membership.objects.select_related("workspace").filter(user=user, workspace__slug=slug).first()


def workspaces_for(*, user: AbstractBaseUser) -> QuerySet[Workspace]:
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def manager_emails(*, workspace: Workspace) -> list[str]:
    """The email addresses of the workspace's active owners and admins, who hear about its
    endpoints (`deliveries.notices`)."""
    roles = (Membership.Role.OWNER, Membership.Role.ADMIN)
    emails = (
        Membership.objects.filter(workspace=workspace, role__in=roles, user__is_active=True)
        .exclude(user__email="")
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )
    return list(dict.fromkeys(emails))
