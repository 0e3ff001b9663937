"""Entry script of the PyInstaller bundle: the same `modeldeck` command as the pip install.

The frozen executable is also its own worker (`modeldeck --worker`, see app/jobs/client.py
worker_command) and self-test (`modeldeck --self-test OUT_DIR`).
"""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.cli import main

    sys.exit(main())
