"""A real django-mojo deployment for tests: its job engine, scheduler and API on a private Redis and a fresh Postgres.

`cluster.MojoCluster` (jobpulse side) starts a private redis-server, creates a Postgres database of its own, migrates
it, and runs django-mojo's own engine and scheduler as child processes under the interpreter of django-mojo's own
environment (`project/`, run there, is the minimal Django project). Tests publish jobs and read django-mojo's stats
through `MojoCluster.call`, which drives django-mojo's own API (`project/agent.py`). Nothing here imitates django-mojo.

`python -m tests.mojo_cluster install` builds that environment (see `__main__.py`); docs/mojo.md says what was
verified against it.
"""
