"""The Celery connector: a Celery cluster's event stream, broker queues and remote control (docs/protocol.md 6)."""
