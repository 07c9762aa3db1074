"""What a build takes from outside: the ComfyUI source at the pinned commit (verified) and the locked
wheels (downloaded once, checked by sha256, served on loopback to the builder)."""
