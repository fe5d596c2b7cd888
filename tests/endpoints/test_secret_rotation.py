"""Rotating a signing secret with an overlap: the secret it replaces keeps signing until
the overlap ends, stored encrypted like the current one, and every change is audited."""

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from endpoints.models import Endpoint, EndpointAuditEntry
from endpoints.services import endpoint_end_overlap, endpoint_rotate_secret


def raw(endpoint_id: int, column: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM endpoints_endpoint WHERE id = %s", [endpoint_id])
        return cursor.fetchone()[0]


def audit(endpoint):
    return list(
        EndpointAuditEntry.objects.filter(endpoint_id=endpoint.id).order_by("id").values_list("action", "changes")
    )


def test_rotation_keeps_the_old_secret_valid_for_24_hours_by_default(make_endpoint):
    endpoint, old = make_endpoint()
    before = timezone.now()
    new = endpoint_rotate_secret(endpoint=endpoint)

    stored = Endpoint.objects.get(id=endpoint.id)
    assert (stored.secret, stored.previous_secret) == (new, old)
    expires_at = stored.previous_secret_expires_at
    assert before + timedelta(hours=24) <= expires_at <= timezone.now() + timedelta(hours=24)
    assert stored.secrets_valid(at=timezone.now()) == [new, old]
    assert stored.secrets_valid(at=expires_at - timedelta(seconds=1)) == [new, old]
    assert stored.secrets_valid(at=expires_at) == [new]  # never an expired secret
    assert stored.overlap_ends_at(now=timezone.now()) == expires_at
    assert stored.overlap_ends_at(now=expires_at) is None
    assert audit(endpoint)[-1] == ("secret_rotated", {"previous_secret_expires_at": [None, expires_at.isoformat()]})


def test_rotation_without_overlap_replaces_the_secret_at_once(make_endpoint):
    endpoint, _ = make_endpoint()
    new = endpoint_rotate_secret(endpoint=endpoint, overlap=timedelta(0))
    stored = Endpoint.objects.get(id=endpoint.id)
    assert (stored.previous_secret, stored.previous_secret_expires_at) == (None, None)
    assert stored.secrets_valid(at=timezone.now()) == [new]
    assert audit(endpoint)[-1] == ("secret_rotated", {})


@pytest.mark.parametrize("overlap", [timedelta(seconds=-1), timedelta(days=7, seconds=1), 24, None])
def test_an_overlap_outside_none_to_7_days_is_refused_and_nothing_changes(make_endpoint, overlap):
    endpoint, secret = make_endpoint()
    with pytest.raises(ValidationError) as info:
        endpoint_rotate_secret(endpoint=endpoint, overlap=overlap)
    assert info.value.message_dict == {"overlap": ["The overlap must be between none (0) and 7 days."]}
    stored = Endpoint.objects.get(id=endpoint.id)
    assert (stored.secret, stored.previous_secret) == (secret, None)
    assert [action for action, _ in audit(endpoint)] == ["created"]


def test_7_days_is_the_longest_overlap(make_endpoint):
    endpoint, _ = make_endpoint()
    endpoint_rotate_secret(endpoint=endpoint, overlap=timedelta(days=7))
    assert Endpoint.objects.get(id=endpoint.id).previous_secret_expires_at > timezone.now() + timedelta(days=6)


def test_rotating_during_an_overlap_drops_the_oldest_secret(make_endpoint):
    endpoint, first = make_endpoint()
    second = endpoint_rotate_secret(endpoint=endpoint)
    third = endpoint_rotate_secret(endpoint=endpoint, overlap=timedelta(hours=1))
    stored = Endpoint.objects.get(id=endpoint.id)
    assert stored.secrets_valid(at=timezone.now()) == [third, second]
    assert first not in stored.secrets_valid(at=timezone.now())
    old_end, new_end = audit(endpoint)[-1][1]["previous_secret_expires_at"]
    assert old_end is not None and new_end < old_end


def test_rotating_a_stale_copy_keeps_the_secret_in_force_as_the_previous_one(make_endpoint):
    endpoint, _ = make_endpoint()
    stale = Endpoint.objects.get(id=endpoint.id)
    second = endpoint_rotate_secret(endpoint=endpoint, overlap=timedelta(0))
    third = endpoint_rotate_secret(endpoint=stale)
    assert Endpoint.objects.get(id=endpoint.id).secrets_valid(at=timezone.now()) == [third, second]


def test_ending_the_overlap_early_stops_the_previous_secret_and_is_audited(make_endpoint, owner):
    endpoint, _ = make_endpoint()
    new = endpoint_rotate_secret(endpoint=endpoint)
    expires_at = Endpoint.objects.get(id=endpoint.id).previous_secret_expires_at

    assert endpoint_end_overlap(endpoint=endpoint, actor=owner) is True

    stored = Endpoint.objects.get(id=endpoint.id)
    assert (stored.previous_secret, stored.previous_secret_expires_at) == (None, None)
    assert stored.secrets_valid(at=timezone.now()) == [new]
    entry = EndpointAuditEntry.objects.filter(endpoint_id=endpoint.id).latest("id")
    assert (entry.action, entry.actor, entry.changes) == (
        "overlap_ended",
        owner,
        {"previous_secret_expires_at": [expires_at.isoformat(), None]},
    )
    # Again, or with no overlap at all: harmless, and nothing to audit.
    assert endpoint_end_overlap(endpoint=endpoint) is False
    assert EndpointAuditEntry.objects.filter(endpoint_id=endpoint.id).count() == 3


def test_ending_an_overlap_that_ran_out_only_forgets_the_old_secret(make_endpoint):
    endpoint, _ = make_endpoint()
    endpoint_rotate_secret(endpoint=endpoint)
    Endpoint.objects.filter(id=endpoint.id).update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    assert endpoint_end_overlap(endpoint=endpoint) is False
    assert raw(endpoint.id, "previous_secret") is None
    assert [action for action, _ in audit(endpoint)] == ["created", "secret_rotated"]


def test_the_previous_secret_is_encrypted_at_rest(make_endpoint):
    endpoint, old = make_endpoint()
    endpoint_rotate_secret(endpoint=endpoint)
    stored = raw(endpoint.id, "previous_secret")
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert old not in stored and old.removeprefix("whsec_")[:12] not in stored
    assert Endpoint.objects.get(id=endpoint.id).previous_secret == old


def test_a_previous_secret_needs_its_expiry(make_endpoint):
    endpoint, _ = make_endpoint()
    with pytest.raises(IntegrityError), transaction.atomic():
        Endpoint.objects.filter(id=endpoint.id).update(previous_secret="whsec_x")


def test_reencrypt_moves_previous_secrets_to_the_newest_key_and_drops_expired_ones(make_endpoint, settings):
    overlapping, _ = make_endpoint()
    old = endpoint_rotate_secret(endpoint=overlapping)  # the previous secret of the next rotation
    new = endpoint_rotate_secret(endpoint=overlapping)
    expired, _ = make_endpoint(url="https://two.example.com/")
    expired_new = endpoint_rotate_secret(endpoint=expired)
    Endpoint.objects.filter(id=expired.id).update(previous_secret_expires_at=timezone.now() - timedelta(minutes=1))
    old_key = settings.WEBHOOKS_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.WEBHOOKS_ENCRYPTION_KEYS = [new_key, old_key]

    call_command("reencrypt_secrets")

    settings.WEBHOOKS_ENCRYPTION_KEYS = [new_key]  # the old key retired
    stored = Endpoint.objects.get(id=overlapping.id)
    assert stored.secrets_valid(at=timezone.now()) == [new, old]
    stored = Endpoint.objects.get(id=expired.id)
    assert (stored.secret, stored.previous_secret, stored.previous_secret_expires_at) == (expired_new, None, None)
