"""A real Celery application for the Celery connector's tests: its broker and backend come from the environment."""
