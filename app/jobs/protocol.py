"""The worker protocol, shared by the worker and its clients (CLI now, GUI later).

stdin:  first line the job spec (JSON), then commands: {"cmd": "cancel"}.
stdout: JSON Lines events, each with an "event" key:
  stage     {"stage", "message", "t_s"}          a new phase began
  progress  {"frac", "message"}
  samples   {"series": {name: [[t_s, value], ...]}}   batched every ~100 ms
  budget    {"budget", "value", "ok", "live"}
  layer     one per-layer row
  artifact  {"path", "kind"}                     bulk data written to the job folder
  result    {"result": {...}}                    the job's outcome; last event on success
  error     {"kind": "bad_input"|"internal", "message"}
  cancelled {}
stderr: logs and tracebacks (faulthandler on).
"""
from __future__ import annotations

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 4
CANCEL = {"cmd": "cancel"}
