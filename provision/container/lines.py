"""One line, one write.

The start script's processes share the container's stdout and stderr, and the image runs Python unbuffered,
where print() writes a line and its newline apart: another process's line can land between the two, and the
log then holds one garbled line (a warm-up's JSON line was read so once). A pipe keeps a write of at most
PIPE_BUF bytes (4096 on Linux, the newline included) whole, so a longer line is cut to that.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO

PIPE_BUF = 4096
CUT = " [cut]"


def emit(line: str, stream: Optional[TextIO] = None) -> None:
    out = stream or sys.stdout
    out.write(whole(line) + "\n")
    out.flush()


def whole(line: str) -> str:
    """The line as it fits one atomic write with its newline (UTF-8 bytes, cut on a character's boundary)."""
    data = line.encode("utf-8", "replace")
    if len(data) < PIPE_BUF:
        return line
    room = PIPE_BUF - 1 - len(CUT)
    return data[:room].decode("utf-8", "ignore") + CUT
