"""Throttling that stops guessing, not users.

A valid key always authenticates; failures are limited per client address and per
presented key prefix; repeated failures are one security-log row per window.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from service.accounts import throttling
from service.accounts.throttling import FailureThrottle
from service.db.models import SecurityEvent
from service.errors import ConfigurationError
from service.settings import load_settings
from tests.harness import Locker


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_are_limited_per_client_and_per_key_prefix() -> None:
    clock = _Clock()
    throttle = FailureThrottle(limit=3, window=60, now=clock)
    verdicts = [throttle.failed(client=f"10.0.0.{n}", key_prefix="victim") for n in range(5)]
    # Many addresses guessing at one key: the key's prefix is throttled.
    assert [v.retry_after is not None for v in verdicts] == [False, False, False, True, True]
    other = [throttle.failed(client="10.9.9.9", key_prefix=f"p{n}") for n in range(5)]
    # One address guessing many keys: the address is throttled.
    assert [v.retry_after is not None for v in other] == [False, False, False, True, True]
    assert all(v.retry_after is not None and 0 < v.retry_after <= 61 for v in other[3:])
    clock.now += 61
    assert throttle.failed(client="10.9.9.9", key_prefix="p9").retry_after is None


def test_failures_of_a_client_are_one_row_per_window() -> None:
    clock = _Clock()
    throttle = FailureThrottle(limit=10, window=60, now=clock)
    verdicts = [throttle.failed(client="10.0.0.1", key_prefix=None) for _ in range(25)]
    assert [v.record for v in verdicts].count(True) == 1
    assert verdicts[0].record and verdicts[0].earlier == 0
    clock.now += 61
    later = throttle.failed(client="10.0.0.1", key_prefix=None)
    assert later.record and later.earlier == 24  # the rest of the last window, counted


def test_memory_is_bounded_by_recent_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttling, "_PRUNE_ABOVE", 5)
    clock = _Clock()
    throttle = FailureThrottle(limit=3, window=60, now=clock)
    for n in range(5):
        throttle.failed(client=f"10.0.0.{n}", key_prefix=None)
    clock.now += 61
    throttle.failed(client="10.1.1.1", key_prefix="p")  # 7 tracked: the old 5 are dropped
    assert throttle.failed(client="10.0.0.1", key_prefix=None).retry_after is None
    assert len(throttle._failures) == 3  # 10.1.1.1, its prefix, and 10.0.0.1 again


@pytest.mark.parametrize("proxies", ["10.0.0.1,not-an-address", "*"])
def test_trusted_proxies_must_be_addresses_or_networks(proxies: str) -> None:
    with pytest.raises(ConfigurationError, match="LOCKER_TRUSTED_PROXIES"):
        load_settings(trusted_proxies=proxies)
    assert load_settings(trusted_proxies=" 10.0.0.1, 172.16.0.0/12 ").trusted_proxy_list == [
        "10.0.0.1",
        "172.16.0.0/12",
    ]


def test_a_valid_key_authenticates_from_a_throttled_address(locker: Locker) -> None:
    with locker.client("lk_000000000000_guess") as guesser:
        answers = [guesser.get("/v1/incidents") for _ in range(12)]
    assert [a.status_code for a in answers[:10]] == [401] * 10
    assert [a.status_code for a in answers[10:]] == [429, 429]
    assert int(answers[10].headers["retry-after"]) > 0
    with locker.client() as admin:
        assert admin.get("/v1/incidents").status_code == 200
    with locker.runtime.database.session() as session:
        events = session.exec(select(SecurityEvent)).all()
    assert len(events) == 1, [(e.kind, e.detail) for e in events]
    assert events[0].kind == "authentication.failed" and events[0].client == "127.0.0.1"
    assert "guess" not in events[0].detail
