"""kiln: turn a version lock, an image spec and a GPU profile into verified ComfyUI GPU images."""

__version__ = "0.1.0"
