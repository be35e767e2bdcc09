"""Messages between the parent and a sandbox child: a JSON header and an optional raw payload, over pipes.

Frame: 12 bytes ``<IQ`` (header length, payload length), the UTF-8 JSON header, then the payload bytes. Nothing
is pickled: the parent must be able to read whatever a hostile child writes without running any of it, so a
reply is parsed as JSON of bounded size, and array payloads are raw bytes whose length the parent checks
against the shape and dtype it asked for. Large inputs travel the other way through a shared memory file
(see :mod:`device_tests.sandbox.client`), not through this pipe.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

_FRAME = struct.Struct("<IQ")
#: Largest JSON header either side accepts (an operator list is the longest thing a header carries).
MAX_HEADER = 1 << 20


class WireTimeout(Exception):
    """The other side did not answer before the deadline."""


class WireClosed(Exception):
    """The other side closed its end (it exited or crashed)."""


class WireError(Exception):
    """The other side sent something that is not a valid frame."""


def send(fd: int, header: dict, payload: bytes | memoryview = b"") -> None:
    """Write one frame (blocking). The header is JSON without NaN/inf."""
    body = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    view = memoryview(payload).cast("B") if len(payload) else memoryview(b"")
    _write_all(fd, _FRAME.pack(len(body), len(view)) + body)
    if len(view):
        _write_all(fd, view)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while len(view):
        n = os.write(fd, view)
        view = view[n:]


def _read_into(fd: int, buf: memoryview, deadline: float | None) -> None:
    pos = 0
    while pos < len(buf):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise WireTimeout()
        n = os.readv(fd, [buf[pos:]])
        if n == 0:
            raise WireClosed()
        pos += n


def recv(fd: int, deadline: float | None = None, max_payload: int = 0) -> tuple[dict, bytearray]:
    """Read one frame: ``(header, payload)``. ``max_payload`` bounds the payload the caller is ready to hold;
    a longer one, an oversized or non-JSON header, or a header that is not an object is :class:`WireError`."""
    head = bytearray(_FRAME.size)
    _read_into(fd, memoryview(head), deadline)
    n_header, n_payload = _FRAME.unpack(head)
    if n_header > MAX_HEADER or n_payload > max_payload:
        raise WireError(f"a frame of {n_header} + {n_payload} bytes (limits {MAX_HEADER} + {max_payload})")
    body = bytearray(n_header)
    _read_into(fd, memoryview(body), deadline)
    try:
        header = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"a header that is not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("a header that is not a JSON object")
    payload = bytearray(n_payload)
    if n_payload:
        _read_into(fd, memoryview(payload), deadline)
    return header, payload


def _no_constants(name: str):
    raise ValueError(f"{name} is not allowed")
