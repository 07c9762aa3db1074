"""Z-Image-Turbo latency on a GPU host: the real ComfyUI server, full-size synthetic weights, levers."""
