"""Front ends: the CLI (app/cli.py), later the Qt GUI (app/gui/) and the worker (app/jobs/)."""
