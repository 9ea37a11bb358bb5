"""Admin passwords and rater tokens."""

from __future__ import annotations

import pytest

from human_eval_app.auth import (
    AccessError,
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
    with pytest.raises(ValueError, match="8 characters"):
        hash_password("short")
    with pytest.raises(ValueError, match="hash-password"):
        verify_password("x", "md5$abc")


def test_admin_sources_in_order() -> None:
    hashed = hash_password("from secrets", n=2**10)
    env = {"AVGEN_ADMIN_PASSWORD": "from env!"}
    assert check_admin("from secrets", secrets_map={"admin_password_hash": hashed}, environ=env)
    assert not check_admin("from env!", secrets_map={"admin_password_hash": hashed}, environ=env)
    assert check_admin("from env!", secrets_map={}, environ=env)
    assert not check_admin("", secrets_map={}, environ=env)
    assert check_admin("named one", environ={}, extra_hashes=[hash_password("named one", n=2**10)])
    with pytest.raises(AccessError, match="no admin password is configured"):
        check_admin("anything", secrets_map={}, environ={})


def test_tokens() -> None:
    token = new_token()
    assert valid_token_format(token) and len(token) == 32 and token_hash(token) != token
    assert new_token() != token
    for forged in ("", None, "short", "' OR 1=1 --", "<script>alert(1)</script>", "a" * 500):
        assert not valid_token_format(forged)
