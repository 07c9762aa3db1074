"""In-container GPU smoke checks for the ComfyUI image.

Run as ``python3 -m smoke --expect EXPECT.json`` with this package's parent
directory on PYTHONPATH. Standard library only; torch, numpy, xformers, triton
and pynvml are used when importable and their absence is reported, not fatal.
"""
