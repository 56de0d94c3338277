from celery import shared_task


@shared_task(soft_time_limit=50, time_limit=60)
def update_dashboard_rollups() -> int:
    """Beat, every minute: fold the audit events since the last tick into the dashboard rollups."""
    from backoffice.dashboards.rollups import rollups_tick

    return rollups_tick()
