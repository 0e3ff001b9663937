"""Worker processes: one per job, JSON Lines on stdout (filled in by the profiling engine)."""
