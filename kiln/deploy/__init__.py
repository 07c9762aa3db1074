"""Deployment targets from one manifest per image and GPU profile: compose, Kubernetes, cloud-init,
RunPod and Vast.ai."""
