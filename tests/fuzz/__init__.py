"""Fuzz campaign over the model readers: mutants of real seed models run through the CLI."""
