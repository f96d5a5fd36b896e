"""The minimal Django project of the test deployment: it runs under django-mojo's own interpreter, not jobpulse's.

Nothing in jobpulse imports these modules. `tests/mojo_cluster/cluster.py` starts them as child processes with the
python of the environment that holds django-mojo (its pins clash with jobpulse's: redis<8), with this folder on
PYTHONPATH and DJANGO_SETTINGS_MODULE=mojo_settings.
"""
