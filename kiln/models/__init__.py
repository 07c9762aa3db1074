"""Model provisioning: an image's model files fetched from their pinned source into the cache's
model folders, resumable and verified by size and sha256 before they take their final name."""
