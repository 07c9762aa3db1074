"""The server side of a WebSocket (RFC 6455) as far as the stand-in needs it: the opening handshake, text
frames to the client, and reading the client's frames until it closes. Stdlib only."""

import base64
import hashlib
import struct
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class Socket:
    """One client connection: `send` may be called from any thread."""

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile, self.lock, self.open = rfile, wfile, threading.Lock(), True

    def send(self, text):
        """A text frame (str) or a binary frame (bytes)."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        head = bytes([0x81 if isinstance(text, str) else 0x82])
        if len(data) < 126:
            head += bytes([len(data)])
        elif len(data) < 65536:
            head += bytes([126]) + struct.pack(">H", len(data))
        else:
            head += bytes([127]) + struct.pack(">Q", len(data))
        with self.lock:
            if not self.open:
                return False
            try:
                self.wfile.write(head + data)
                self.wfile.flush()
            except OSError:
                self.open = False
        return self.open

    def read_until_closed(self):
        """Read (and drop) the client's frames; return when it closes or the connection ends."""
        try:
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    break
                length = head[1] & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self.rfile.read(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self.rfile.read(8))[0]
                self.rfile.read((4 if head[1] & 0x80 else 0) + length)
                if head[0] & 0x0F == 0x8:
                    break
        except OSError:
            pass
        with self.lock:
            self.open = False
