"""What the container runs around ComfyUI while serving: the warm-up before ready."""
