"""Every gate rule, in the order findings are reported within a severity."""

from .env import alloc_conf_valid, env_knobs
from .gpu import compute_capability_covered, driver_floor, driver_floor_runs_cuda, vram_fits_models
from .flags import launch_flags_valid
from .models import comfyui_loads_models, model_sources_pinned, warmup_follows_recipe, warmup_loads_the_models
from .stack import attention_backend, base_matches_python, cuda_carried_by_wheels, lock_consistent, wheels_for_target, \
    xformers_matches_torch

ALL_RULES = (
    lock_consistent, xformers_matches_torch, wheels_for_target, cuda_carried_by_wheels, base_matches_python,
    compute_capability_covered, vram_fits_models, comfyui_loads_models, model_sources_pinned, launch_flags_valid,
    alloc_conf_valid, env_knobs, warmup_loads_the_models, warmup_follows_recipe, driver_floor_runs_cuda, driver_floor,
    attention_backend,
)
