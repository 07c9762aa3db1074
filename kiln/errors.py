"""The one error type the library raises for anything a user can fix."""

import re

# C0 and C1 controls (escape sequences, 8-bit CSI) and the bidi overrides that reorder what a terminal shows
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Control characters (a terminal's escape sequences among them) written out as \\x.. escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class KilnError(Exception):
    """A user-actionable failure: what went wrong, where, and how to fix it."""

    def __init__(self, what: str, where: str = "", fix: str = ""):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.line())

    def line(self) -> str:
        head = f"{self.where}: {self.what}" if self.where else self.what
        text = f"{head}; {self.fix}" if self.fix else head
        return printable(text)


class Interrupted(KilnError):
    """Ctrl-C during work that started something: says exactly what was removed before giving up."""

    def __init__(self, removed: list[str]):
        self.removed = removed
        what = ", ".join(removed) if removed else "nothing needed removing"
        super().__init__(f"interrupted; removed: {what}")
