import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from endpoints.models import Endpoint


def raw_secret(endpoint_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM endpoints_endpoint WHERE id = %s", [endpoint_id])
        return cursor.fetchone()[0]


def test_the_database_holds_no_usable_secret(make_endpoint, settings):
    endpoint, secret = make_endpoint()
    stored = raw_secret(endpoint.id)
    assert secret not in stored
    assert secret.removeprefix("whsec_")[:12] not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert Endpoint.objects.get(id=endpoint.id).secret == secret
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # someone else's key
    with pytest.raises(ValueError) as info:
        Endpoint.objects.get(id=endpoint.id).secret  # noqa: B018
    assert secret not in str(info.value)


def test_keys_rotate_and_reencrypt_moves_every_secret_to_the_newest_key(make_endpoint, settings, capsys):
    first, first_secret = make_endpoint()
    second, second_secret = make_endpoint(url="https://two.example.com/")
    old = settings.WEBHOOKS_ENCRYPTION_KEYS[0]
    new = Fernet.generate_key().decode()
    settings.WEBHOOKS_ENCRYPTION_KEYS = [new, old]
    assert Endpoint.objects.get(id=first.id).secret == first_secret  # old tokens still read
    call_command("reencrypt_secrets")
    assert "Re-encrypted the signing secrets of 2 endpoint(s)." in capsys.readouterr().out
    settings.WEBHOOKS_ENCRYPTION_KEYS = [new]  # the old key retired
    assert Endpoint.objects.get(id=first.id).secret == first_secret
    assert Endpoint.objects.get(id=second.id).secret == second_secret


def test_reencrypt_fails_clearly_when_a_key_is_missing(make_endpoint, settings):
    make_endpoint()
    settings.WEBHOOKS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("reencrypt_secrets")
