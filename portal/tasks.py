import logging

from celery import shared_task

from portal.audit import audit_chain_pending
from portal.audit_checkpoint import CheckpointError, audit_checkpoint_export

logger = logging.getLogger(__name__)


@shared_task(soft_time_limit=50, time_limit=60)
def chain_audit_events() -> int:
    """Beat, every few seconds: committed audit rows take their place in the chain."""
    return audit_chain_pending()


@shared_task(soft_time_limit=50, time_limit=60)
def export_audit_checkpoint() -> int:
    """Beat (`ECARD_AUDIT_CHECKPOINT_SECONDS`): a signed checkpoint of the chain, outside the database.

    Refuses, failing loudly, when the chain no longer reaches the newest checkpoint: a checkpoint
    of a shortened chain would hide the rows deleted from its end."""
    try:
        checkpoint, _ = audit_checkpoint_export()
    except CheckpointError as exc:
        logger.error("audit checkpoint refused: %s", exc)
        raise
    return checkpoint.chain_seq
