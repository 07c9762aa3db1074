"""Which CUDA code a stack's torch build runs on a card: its own SASS, the SASS of an older minor of the
same major (binary compatible), or none. Pure: reads the lock's [stack] only."""

from __future__ import annotations

from kiln.data.lock import Stack, StackEntry

NATIVE, COMPATIBLE = "native", "compatible"


def capability(text: str) -> tuple[int, int]:
    """'8.9', 'sm_89' or 'sm_120' as (major, minor)."""
    digits = text.replace("sm_", "").replace(".", "")
    return int(digits[:-1]), int(digits[-1])


def runs_as(stack: Stack, compute_capability: str) -> tuple[str, str] | None:
    """(NATIVE or COMPATIBLE, the sm_XY code it runs) for a card, or None when the build has nothing for it."""
    cc = capability(compute_capability)
    sass = sorted(capability(x) for x in stack.torch_sass)
    if cc in sass:
        return NATIVE, "sm_%d%d" % cc
    same_major = [x for x in sass if x[0] == cc[0] and x[1] <= cc[1]]
    return (COMPATIBLE, "sm_%d%d" % same_major[-1]) if same_major else None


def stacks_running(stacks: dict[str, StackEntry], compute_capability: str) -> list[str]:
    """The lock's stacks whose torch build runs on a card, in the lock's order."""
    return [name for name, entry in stacks.items() if runs_as(entry.stack, compute_capability)]
