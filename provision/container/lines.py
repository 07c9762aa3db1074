"""One line, one write.

The start script's processes share the container's stdout and stderr, and the image runs Python unbuffered,
where print() writes a line and its newline apart: another process's line can land between the two, and the
log then holds one garbled line (a warm-up's JSON line was read so once). A line written whole, under the
pipe's atomic size (4096 bytes), arrives whole.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO


def emit(line: str, stream: Optional[TextIO] = None) -> None:
    out = stream or sys.stdout
    out.write(line + "\n")
    out.flush()
