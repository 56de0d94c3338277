"""Health, metrics and logs of every process (docs/operations.md "Health, metrics and logs").

`requestid` gives each request an id that follows it into logs, Celery tasks and webhooks;
`logjson` writes log records as JSON lines; `health` answers /readyz; `metrics` holds the
process metrics and the /metrics exposition; `liveness` lets a probe tell a stuck worker or beat.
"""
