"""The render stage: Jinja templates and the data become a build context (Dockerfile, start script,
model paths, the image's facts, a manifest). Pure and deterministic: same inputs, same bytes."""
