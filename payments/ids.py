"""Opaque public ids with a prefix (`lnk_`, `fbd_`, `stl_`, `prm_`, `evt_`)."""

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_public_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
