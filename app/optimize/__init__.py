"""Find the best variant of a model for this machine: probe, candidates, search, cache, report.

Orchestration (app layer): it combines passes (converters) with backends and verification
(profilers). Frameworks are imported inside functions only.
"""
from __future__ import annotations
