"""What audit records keep of request and response content: every value a log must lose masked."""

from __future__ import annotations

from ironhold.audit.redact import redact, redact_text


def test_personal_data_and_secrets_found_by_the_guard_are_masked() -> None:
    text = ("IBAN DE89 3704 0044 0532 0130 00, phone +1 415 555 0100, mail jane.doe@example.com, "
            "card 4111 1111 1111 1111, config password = \"hunter2xyz\"")
    assert redact_text(text) == (
        "IBAN [REDACTED:iban], phone [REDACTED:phone], mail [REDACTED:email], "
        "card [REDACTED:payment_card], config password = \"[REDACTED:password]\"")


def test_the_audit_floor_masks_credentials_that_do_not_look_random() -> None:
    # A low-entropy key and a short bearer token pass the guard's entropy check; a log must
    # still lose them.
    key = "sk-" + "A1b2C3d4" * 4
    assert redact_text(f"key {key} ok") == "key [REDACTED:api_key] ok"
    assert redact_text("Authorization: Bearer abcdefgh12345678") == (
        "Authorization: [REDACTED:bearer]")
    # A local number the guard cannot read without a region.
    assert redact_text("call 415 555 0100 today") == "call [REDACTED:phone] today"


def test_overlapping_finds_become_one_placeholder() -> None:
    jwt = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
           "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
    # The floor's bearer pattern, its JWT pattern and the guard's JWT and entropy finds all
    # cover parts of this value.
    assert redact_text(f"Bearer {jwt} end") == "[REDACTED:bearer] end"
    assert redact_text(f"token {jwt}") == "token [REDACTED:json_web_token]"


def test_clean_text_and_other_values_are_untouched() -> None:
    assert redact_text("What is the capital of France?") == "What is the capital of France?"
    body = {"model": "chat", "n": 2, "ok": True,
            "messages": [{"role": "user", "content": "mail a@example.org"}]}
    assert redact(body) == {"model": "chat", "n": 2, "ok": True,
                            "messages": [{"role": "user", "content": "mail [REDACTED:email]"}]}
