"""What every settings page shares: the workspace, resolved for the person asking."""

import functools
from typing import Any

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import mark_safe
from markdown_it import MarkdownIt

from .models import Membership, Workspace
from .selectors import membership_for, workspaces_for


class WorkspaceMixin(LoginRequiredMixin):
    """Outsiders get 404, exactly as for a workspace that does not exist; members read,
    and any POST from someone who is not an owner or admin is refused with 403."""

    membership: Membership
    workspace: Workspace

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        membership = membership_for(user=request.user, slug=kwargs["slug"])
        if membership is None:
            raise Http404("No such workspace.")
        if request.method not in ("GET", "HEAD", "OPTIONS") and not membership.can_manage_webhooks:
            raise PermissionDenied("Only the workspace's owners and admins can change webhooks.")
        self.membership = membership
        self.workspace = membership.workspace
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)  # type: ignore[misc]
        context.update(workspace=self.workspace, can_manage=self.membership.can_manage_webhooks)
        return context


def home(request: HttpRequest) -> HttpResponse:
    """Straight to the webhooks settings of the person's first workspace."""
    if not request.user.is_authenticated:
        return HttpResponseRedirect(reverse("login"))
    workspace = workspaces_for(user=request.user).first()
    if workspace is None:
        return render(request, "no_workspace.html")
    return HttpResponseRedirect(reverse("endpoints:list", kwargs={"slug": workspace.slug}))


def workspaces(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the workspaces the signed-in person belongs to, for the switcher."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"my_workspaces": list(workspaces_for(user=request.user))}


RECEIVING_DOCS = settings.BASE_DIR / "docs" / "receiving.md"


@functools.cache
def _receiving_docs_html() -> str:
    # docs/receiving.md is ours, so its HTML (the example markers) may pass through.
    return MarkdownIt("commonmark").enable("table").render(RECEIVING_DOCS.read_text(encoding="utf-8"))


def docs_receiving(request: HttpRequest) -> HttpResponse:
    """docs/receiving.md as a page: one text, whose examples the tests run, for the
    repository and the site."""
    return render(request, "docs/receiving.html", {"content": mark_safe(_receiving_docs_html())})  # noqa: S308
