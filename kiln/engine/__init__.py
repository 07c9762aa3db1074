"""Everything that talks to the Docker Engine: bases, builds, running, smoke, cleaning up. Docker API
errors become KilnErrors here, where they happen."""
