"""`python manage.py export_audit_checkpoint`: write a signed checkpoint of the audit chain and print it.

What the beat task does (portal/audit_checkpoint.py), on demand: the checkpoint goes to
`ECARD_AUDIT_CHECKPOINT_PATH` if the chain moved since the newest one, and the newest checkpoint
is printed as the last line, so that an operator can also keep it elsewhere (a ticket, a
second site) and give it to `verify_audit_chain --checkpoint` later. Exit status 1, writing
nothing, when the chain no longer reaches the newest checkpoint.
"""

from django.core.management.base import BaseCommand, CommandError

from portal.audit_checkpoint import CheckpointError, audit_checkpoint_export, checkpoint_store, public_key_b64


class Command(BaseCommand):
    help = "Write a signed checkpoint of the audit chain outside the database and print it."

    def handle(self, *args, **options) -> None:
        store = checkpoint_store()
        try:
            checkpoint, written = audit_checkpoint_export(store)
        except CheckpointError as exc:
            raise CommandError(f"audit checkpoint REFUSED: {exc}", returncode=1) from None
        state = "written to" if written else "unchanged in"
        self.stdout.write(
            f"audit checkpoint at chain position {checkpoint.chain_seq} {state} {store.describe()};"
            f" Ed25519 key version {checkpoint.key_version}, public key {public_key_b64(checkpoint.key_version)}"
        )
        self.stdout.write(checkpoint.to_json())
