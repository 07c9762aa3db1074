"""Checking what a user typed on the command line before any work starts: each bad value becomes one
KilnError naming the flag, the value and the fix."""

from __future__ import annotations

import re
from pathlib import Path

from kiln.errors import KilnError

_GPU_ID = re.compile(r"^(\d+|GPU-[0-9a-fA-F-]{8,}|MIG-[0-9a-fA-F-]{8,})$")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


def port(value: object, flag: str = "--port") -> int:
    """A TCP port, 1-65535, in ASCII digits only (int() also takes "+80", " 80", "8_0" and other scripts' digits)."""
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise KilnError(f"'{shown(value)}' is not a port number", flag, "give a number from 1 to 65535")
    number = int(text)
    if not 1 <= number <= 65535:
        raise KilnError(f"port {number} is out of range", flag, "give a number from 1 to 65535")
    return number


def gpus(value: str) -> str:
    """all, or device indexes / UUIDs separated by commas (what `docker run --gpus device=` takes)."""
    if value == "all":
        return value
    ids = value.split(",")
    if not value or not all(_GPU_ID.match(i.strip()) for i in ids):
        raise KilnError(f"'{shown(value)}' is not a GPU selection", "--gpus",
                        "write all, or device indexes or UUIDs separated by commas, like 0,1")
    return ",".join(i.strip() for i in ids)


MOST_SERVERS = 100  # cloud-init: server i on host_port + i, its exporter's ports 1000 and 1100 above: i < 100


def servers(value: object, flag: str = "--gpus") -> int:
    """How many servers (GPUs) one host runs behind its balancer: 1 to MOST_SERVERS."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MOST_SERVERS:
        raise KilnError(f"'{shown(value)}' is not a number of GPUs from 1 to {MOST_SERVERS}", flag,
                        f"give the host's GPU count, like 2 or 8 (at most {MOST_SERVERS}: server i's ports are "
                        "host_port + i, with its exporter 1000 and 1100 above)")
    return int(text)


def name(value: str, flag: str = "--name") -> str:
    if not _NAME.match(value):
        raise KilnError(f"'{shown(value)}' is not a container name", flag,
                        "use letters, digits, '_', '.' and '-' (starting with a letter or digit)")
    return value


def positive(value: object, flag: str) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise KilnError(f"'{shown(value)}' is not a number", flag, "give a number of seconds") from None
    if not number > 0:
        raise KilnError(f"{number:g} is not positive", flag, "give a number of seconds above 0")
    return number


def whole(value: object, flag: str) -> int:
    """A whole number from 0 up (a seed, a count)."""
    try:
        number = int(str(value))
    except ValueError:
        raise KilnError(f"'{shown(value)}' is not a whole number", flag, "give a number like 0 or 42") from None
    if number < 0:
        raise KilnError(f"{number} is negative", flag, "give a number from 0 up")
    return number


def path(value: str, flag: str) -> Path:
    if not value or any(c in value for c in "\x00\n\r"):
        raise KilnError(f"'{shown(value)}' is not a usable path", flag, "give a path on one line")
    if value.startswith("-"):  # `invoke models.synth --help` hands "--help" to the first required option
        raise KilnError(f"'{shown(value)}' looks like an option, not a path", flag,
                        f"give the path after {flag} (write ./{value} for a file whose name starts with '-')")
    return Path(value)


def shown(value: object, limit: int = 80) -> str:
    """A value as a message quotes it: escaped to ASCII, cut to limit characters."""
    text = str(value)
    return text.encode("unicode_escape").decode("ascii")[:limit]
