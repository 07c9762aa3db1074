# Stand-in for ComfyUI's version file: reports the version the stand-in imitates.
__version__ = "0.3.18"
