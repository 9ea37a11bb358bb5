"""Admin passwords and rater tokens."""

from __future__ import annotations

import pytest

from human_eval_app.auth import (
    AccessError,
    SignInThrottle,
    admin_credentials,
    check_admin,
    hash_password,
    new_token,
    token_hash,
    valid_token_format,
    verify_password,
)


def test_password_hash_round_trip() -> None:
    hashed = hash_password("correct horse", n=2**10)
    assert hashed.startswith("scrypt$1024$") and "correct horse" not in hashed
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horsE", hashed)
    assert hash_password("correct horse", n=2**10) != hashed  # salted
    with pytest.raises(ValueError, match="at least 12"):
        hash_password("short")
    with pytest.raises(ValueError, match="hash-password"):
        verify_password("x", "md5$abc")


def test_admin_sources_in_order() -> None:
    hashed = hash_password("from secrets", n=2**10)
    env = {"AVGEN_ADMIN_PASSWORD": "from the env!"}
    assert check_admin("from secrets", secrets_map={"admin_password_hash": hashed}, environ=env)
    assert not check_admin("from the env!", secrets_map={"admin_password_hash": hashed}, environ=env)
    assert check_admin("from the env!", secrets_map={}, environ=env)
    assert not check_admin("", secrets_map={}, environ=env)
    assert check_admin("the named one", environ={}, extra_hashes=[hash_password("the named one", n=2**10)])
    with pytest.raises(AccessError, match="no admin password is configured"):
        check_admin("anything", secrets_map={}, environ={})


def test_tokens() -> None:
    token = new_token()
    assert valid_token_format(token) and len(token) == 32 and token_hash(token) != token
    assert new_token() != token
    for forged in ("", None, "short", "' OR 1=1 --", "<script>alert(1)</script>", "a" * 500):
        assert not valid_token_format(forged)


def test_admin_passwords_need_twelve_characters() -> None:
    hash_password("twelve chars", n=2**10)
    with pytest.raises(ValueError, match="has 11 characters; an admin password needs at least 12"):
        hash_password("eleven char", n=2**10)
    with pytest.raises(ValueError, match="AVGEN_ADMIN_PASSWORD has 1 characters"):
        admin_credentials({}, {"AVGEN_ADMIN_PASSWORD": "x"})
    with pytest.raises(ValueError, match="admin_password has 5 characters"):
        check_admin("short", secrets_map={"admin_password": "short"}, environ={})


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sign_in_throttle_backs_off_to_a_cap_and_forgets() -> None:
    clock = _Clock()
    throttle = SignInThrottle(base=1.0, cap=8.0, forget_after=600.0, clock=clock)
    assert throttle.wait_seconds("a") == 0
    waits = [throttle.failed("a") for _ in range(6)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubles, then stays at the cap
    assert throttle.wait_seconds("a") == 8.0 and throttle.wait_seconds("b") == 0  # keys are separate
    clock.now += 5
    assert throttle.wait_seconds("a") == 3.0
    clock.now += 3
    assert throttle.wait_seconds("a") == 0  # never locked out longer than the cap
    throttle.succeeded("a")
    assert throttle.failed("a") == 1.0  # a right password starts afresh
    clock.now += 600
    assert throttle.wait_seconds("a") == 0 and throttle.failed("a") == 1.0  # forgotten after a quiet while


def test_sign_in_throttle_free_failures_and_bounded_keys() -> None:
    clock = _Clock()
    throttle = SignInThrottle(base=1.0, cap=30.0, free=3, max_keys=2, clock=clock)
    assert [throttle.failed("all") for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]
    throttle.failed("x")
    throttle.failed("y")  # a third key drops the oldest
    assert throttle.wait_seconds("all") == 0 and throttle.wait_seconds("y") == 0
    assert len(throttle._failures) == 2
