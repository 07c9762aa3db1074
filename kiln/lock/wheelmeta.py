"""Read a remote wheel's METADATA with HTTP range requests instead of downloading the whole wheel."""

from __future__ import annotations

import struct
import zlib
from email.parser import HeaderParser

from kiln.errors import KilnError
from kiln.lock.index import fetch_bytes

BAD_WHEEL_FIX = "the index served a broken file; retry later or pin another version"

_EOCD_SIG = b"PK\x05\x06"
_TAIL = 65536 + 22


def requires_dist(metadata_text: str) -> tuple[str, ...]:
    return tuple(HeaderParser().parsestr(metadata_text).get_all("Requires-Dist") or ())


def remote_metadata(url: str, size: int) -> str:
    """METADATA of the wheel at url (size bytes), read from its zip central directory."""
    try:
        return _read_metadata(url, size)
    except struct.error as exc:
        raise KilnError(f"not a readable wheel: truncated zip structure ({exc})", url, BAD_WHEEL_FIX) from None


def _read_metadata(url: str, size: int) -> str:
    tail_start = max(0, size - _TAIL)
    tail = fetch_bytes(url, byte_range=(tail_start, size - 1))
    eocd = tail.rfind(_EOCD_SIG)
    if eocd < 0:
        raise KilnError("not a readable wheel: no zip end-of-directory record", url, BAD_WHEEL_FIX)
    cd_size, cd_offset = struct.unpack("<II", tail[eocd + 12:eocd + 20])
    directory = _slice(url, tail, tail_start, cd_offset, cd_size)
    offset, method, csize = _find_metadata(directory)
    header = fetch_bytes(url, byte_range=(offset, offset + 30 + 65535 + csize))
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    data = header[30 + name_len + extra_len:30 + name_len + extra_len + csize]
    try:
        raw = zlib.decompress(data, -15) if method == 8 else data
        return raw.decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise KilnError(f"not a readable wheel: METADATA is corrupt ({exc})", url, BAD_WHEEL_FIX) from None


def _slice(url: str, tail: bytes, tail_start: int, start: int, length: int) -> bytes:
    if start >= tail_start:
        return tail[start - tail_start:start - tail_start + length]
    return fetch_bytes(url, byte_range=(start, start + length - 1))


def _find_metadata(directory: bytes) -> tuple[int, int, int]:
    pos = 0
    while pos + 46 <= len(directory):
        method, = struct.unpack("<H", directory[pos + 10:pos + 12])
        csize, = struct.unpack("<I", directory[pos + 20:pos + 24])
        name_len, extra_len, comment_len = struct.unpack("<HHH", directory[pos + 28:pos + 34])
        offset, = struct.unpack("<I", directory[pos + 42:pos + 46])
        name = directory[pos + 46:pos + 46 + name_len].decode("utf-8", "replace")
        if name.endswith(".dist-info/METADATA") and name.count("/") == 1:
            return offset, method, csize
        pos += 46 + name_len + extra_len + comment_len
    raise KilnError("not a readable wheel: no .dist-info/METADATA", "wheel", BAD_WHEEL_FIX)
