"""The django-mojo connector: a deployment's Redis keys and Postgres tables (docs/mojo.md)."""
