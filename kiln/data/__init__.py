"""Data models: one per data file (versions.lock, gpus.yaml, images/*.yaml, the reference tables) and
one for the facts an image carries. Loading validates; nothing here does I/O beyond reading files."""
