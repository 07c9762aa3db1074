"""The host an image runs on: preparing its cache folder, and a read-only check of its driver,
container toolkit, GPUs, clocks and disks against the image it will run."""
