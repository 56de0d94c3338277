"""The contract's strings to sign and Ed25519 helpers."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments import signing

# A fixed private key (RFC 8032 test 1 secret) makes the vectors reproducible.
FIXED_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
FIXED_PUBLIC_B64 = base64.b64encode(
    bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
).decode()


def test_fixed_private_key_gives_the_rfc8032_public_key_in_standard_base64():
    key = signing.private_key_from_raw(FIXED_SECRET)
    assert signing.public_key_b64(key) == FIXED_PUBLIC_B64
    assert len(base64.b64decode(FIXED_PUBLIC_B64)) == 32


def test_rfc8032_empty_message_vector_is_reproduced():
    key = signing.private_key_from_raw(FIXED_SECRET)
    expected = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert signing.sign(key, b"") == base64.b64encode(expected).decode()


def test_request_string_to_sign_is_five_lines_each_ending_in_newline():
    message = signing.request_string_to_sign("post", "/api/v1/linkages?limit=10", 1700000000, "n" * 16, b'{"a":1}')
    assert message == b'POST\n/api/v1/linkages?limit=10\n1700000000\nnnnnnnnnnnnnnnnn\n{"a":1}\n'


def test_request_without_body_signs_an_empty_fifth_line():
    assert signing.request_string_to_sign("GET", "/api/v1/events", 1, "abc", b"") == b"GET\n/api/v1/events\n1\nabc\n\n"


def test_response_string_to_sign_has_status_and_request_nonce():
    assert signing.response_string_to_sign(200, "", 5, "xyz", b"{}") == b"200\n\n5\nxyz\n{}\n"
    assert signing.response_string_to_sign(409, "req", 5, "xyz", b"") == b"409\nreq\n5\nxyz\n\n"


def test_webhook_string_to_sign_starts_with_the_word_webhook_and_the_event_id():
    body = b'{"id":"evt_1","type":"certificate.suspended"}'
    assert signing.webhook_string_to_sign("evt_1", 7, "nonce", body) == b"webhook\nevt_1\n7\nnonce\n" + body + b"\n"


def test_signature_by_fixed_key_verifies_with_its_public_key():
    key = signing.private_key_from_raw(FIXED_SECRET)
    message = signing.webhook_string_to_sign("evt_abc", 1700000000, "N" * 20, '{"名":"张*明"}'.encode())
    signature = signing.sign(key, message)
    assert len(base64.b64decode(signature)) == 64
    assert signing.verify(FIXED_PUBLIC_B64, message, signature)


@given(position=st.integers(min_value=0, max_value=40), flip=st.integers(min_value=1, max_value=255))
def test_changing_any_byte_of_the_body_fails_verification(position, flip):
    key = signing.private_key_from_raw(FIXED_SECRET)
    body = b'{"id":"evt_abc","type":"linkage.created","v":1}'
    position %= len(body)
    signature = signing.sign(key, signing.webhook_string_to_sign("evt_abc", 1, "n" * 16, body))
    tampered = bytearray(body)
    tampered[position] ^= flip
    assert not signing.verify(
        FIXED_PUBLIC_B64, signing.webhook_string_to_sign("evt_abc", 1, "n" * 16, bytes(tampered)), signature
    )


def test_signature_does_not_verify_with_another_key_or_another_event_id():
    key = signing.private_key_from_raw(FIXED_SECRET)
    message = signing.webhook_string_to_sign("evt_a", 1, "n" * 16, b"{}")
    signature = signing.sign(key, message)
    other = signing.public_key_b64(signing.generate_private_key())
    assert not signing.verify(other, message, signature)
    assert not signing.verify(FIXED_PUBLIC_B64, signing.webhook_string_to_sign("evt_b", 1, "n" * 16, b"{}"), signature)


@pytest.mark.parametrize("signature", ["", "not base64!", "AAAA", base64.b64encode(b"x" * 63).decode()])
def test_malformed_signatures_are_refused_without_raising(signature):
    assert not signing.verify(FIXED_PUBLIC_B64, b"message", signature)


def test_malformed_public_key_is_refused_without_raising():
    key = signing.private_key_from_raw(FIXED_SECRET)
    assert not signing.verify("AAAA", b"m", signing.sign(key, b"m"))


def test_webhook_headers_are_made_afresh_with_a_contract_nonce():
    key = signing.private_key_from_raw(FIXED_SECRET)
    first = signing.webhook_headers(key_id="k1", private_key=key, event_id="evt_1", body=b"{}", timestamp=10)
    second = signing.webhook_headers(key_id="k1", private_key=key, event_id="evt_1", body=b"{}", timestamp=10)
    assert first.nonce != second.nonce
    assert signing.NONCE_RE.match(first.nonce)
    headers = first.as_dict()
    assert headers["Ecard-Key-Id"] == "k1" and headers["Ecard-Timestamp"] == "10"
    message = signing.webhook_string_to_sign("evt_1", headers["Ecard-Timestamp"], headers["Ecard-Nonce"], b"{}")
    assert signing.verify(FIXED_PUBLIC_B64, message, headers["Ecard-Signature"])
