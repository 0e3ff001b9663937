"""Errors a person can act on. The CLI prints `str(err)` as one line; the GUI shows it as is."""
from __future__ import annotations


class ModelDeckError(Exception):
    """Base for every error that carries a message meant for the user."""


class ModelLoadError(ModelDeckError):
    """The file could not be read as a model; the message says why and what to do."""


class UnsupportedModelError(ModelLoadError):
    """The file is a model, but something in it (an op, a construct) is not supported."""


class ConsentRequired(ModelLoadError):
    """Loading or running the file would run code stored in it; only with the user's consent.

    The message names no CLI flag: each front end adds how to give consent (the CLI names
    --trust, the window shows its consent dialog). The worker reports it as kind
    "needs_consent".
    """


class Cancelled(Exception):
    """The user cancelled the job. Not an error: whoever created partial outputs removes them."""
