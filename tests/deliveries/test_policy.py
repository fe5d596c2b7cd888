import pytest

from deliveries.policy import Outcome, classify, retry_delay


@pytest.mark.parametrize("status_code", [200, 201, 202, 204, 299])
def test_2xx_is_success(status_code):
    assert classify(status_code=status_code) == Outcome.SUCCESS


@pytest.mark.parametrize("status_code", [400, 401, 403, 404, 405, 409, 410, 413, 422, 451, 499])
def test_4xx_other_than_408_and_429_is_permanent(status_code):
    assert classify(status_code=status_code) == Outcome.PERMANENT


@pytest.mark.parametrize("status_code", [408, 429, 500, 502, 503, 504, 599, 301, 302, 304, 307, 308, 100, None])
def test_408_429_5xx_3xx_and_no_response_are_transient(status_code):
    assert classify(status_code=status_code) == Outcome.TRANSIENT


def test_retry_schedule_is_1_2_4_seconds_then_exhausted():
    delays = [1, 2, 4]
    assert [retry_delay(failed_attempts=n, delays=delays) for n in (1, 2, 3, 4)] == [1, 2, 4, None]


def test_retry_schedule_follows_the_setting():
    assert retry_delay(failed_attempts=1, delays=[]) is None
    assert retry_delay(failed_attempts=2, delays=[5, 30]) == 30


def test_retry_delay_counts_from_one():
    with pytest.raises(ValueError):
        retry_delay(failed_attempts=0, delays=[1])
