"""The records one stage hands to the next (build, publish, smoke, run, deploy): typed, versioned models,
and the one owner of the build/ folder where they live (folder.py)."""
