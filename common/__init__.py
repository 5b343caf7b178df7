"""What every package shares: the errors the command line reports in one line, atomic file writes
and the one console printer. Imports nothing from the project (the lowest layer)."""
