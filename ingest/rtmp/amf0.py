"""AMF0 (Action Message Format 0) encoding and decoding.

Python mapping (decode -> encode round-trips):

=====================  =====================================
AMF0 type (marker)     Python value
=====================  =====================================
number (0x00)          ``float`` (``int`` is accepted when encoding)
boolean (0x01)         ``bool``
string (0x02)          ``str``
object (0x03)          ``dict[str, Any]``
null (0x05)            ``None``
undefined (0x06)       :data:`UNDEFINED`
reference (0x07)       the referenced, already decoded value
ECMA array (0x08)      :class:`ECMAArray` (a ``dict`` subclass)
strict array (0x0A)    ``list`` (``tuple`` is accepted when encoding)
date (0x0B)            :class:`AMF0Date`
long string (0x0C)     ``str`` (chosen when a string exceeds 65535 UTF-8 bytes)
XML document (0x0F)    :class:`XMLDocument` (a ``str`` subclass)
typed object (0x10)    :class:`TypedObject`
=====================  =====================================

The decoder never raises anything but :class:`AMFDecodeError` (a subclass of
:class:`RTMPProtocolError`): truncation, unknown markers (movie clip, record set, the AMF3
switch) and nesting deeper than ``max_depth`` are all reported with the offset concerned.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any

from ingest.rtmp.errors import AMFDecodeError

__all__ = [
    "MAX_DEPTH_LIMIT",
    "UNDEFINED",
    "AMF0Date",
    "AMF0Decoder",
    "ECMAArray",
    "Marker",
    "TypedObject",
    "XMLDocument",
    "decode",
    "decode_value",
    "encode",
]

DEFAULT_MAX_DEPTH = 32
"""Default bound on nested objects/arrays."""
MAX_DEPTH_LIMIT = 100
"""Highest ``max_depth`` accepted: decoding recurses about four Python frames per level, so a
deeper limit would let a peer raise RecursionError instead of :class:`AMFDecodeError`."""


class Marker(enum.IntEnum):
    """AMF0 specification 2.1: type markers."""

    NUMBER = 0x00
    BOOLEAN = 0x01
    STRING = 0x02
    OBJECT = 0x03
    MOVIECLIP = 0x04
    NULL = 0x05
    UNDEFINED = 0x06
    REFERENCE = 0x07
    ECMA_ARRAY = 0x08
    OBJECT_END = 0x09
    STRICT_ARRAY = 0x0A
    DATE = 0x0B
    LONG_STRING = 0x0C
    UNSUPPORTED = 0x0D
    RECORDSET = 0x0E
    XML_DOCUMENT = 0x0F
    TYPED_OBJECT = 0x10
    AVMPLUS_OBJECT = 0x11


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_F64 = struct.Struct(">d")
_DATE = struct.Struct(">dh")
_MAX_U16 = 0xFFFF
_OBJECT_END_BYTES = b"\x00\x00\x09"


class _Undefined(enum.Enum):
    """Type of the :data:`UNDEFINED` singleton."""

    UNDEFINED = "undefined"

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined.UNDEFINED
"""The AMF0 ``undefined`` value (distinct from ``null``, which is ``None``)."""


class ECMAArray(dict[str, Any]):
    """An associative array encoded with the ECMA array marker (``onMetaData`` uses it)."""


class XMLDocument(str):
    """A string encoded with the XML document marker."""

    __slots__ = ()


@dataclass(frozen=True)
class AMF0Date:
    """An AMF0 date: milliseconds since the Unix epoch (UTC) and a reserved time zone."""

    milliseconds: float
    """Milliseconds since 1970-01-01T00:00:00Z."""
    timezone: int = 0
    """Reserved by the specification; should be 0."""


@dataclass
class TypedObject:
    """An object with a registered class name (AMF0 2.18)."""

    class_name: str
    """The class alias."""
    properties: dict[str, Any] = field(default_factory=dict)
    """The properties, in wire order."""


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode(*values: Any) -> bytes:
    """Encode ``values`` one after the other (e.g. a command name, a transaction id, ...)."""
    out = bytearray()
    for value in values:
        _encode_value(out, value)
    return bytes(out)


def _encode_value(out: bytearray, value: Any) -> None:
    if value is None:
        out.append(Marker.NULL)
    elif value is UNDEFINED:
        out.append(Marker.UNDEFINED)
    elif isinstance(value, bool):
        out += bytes((Marker.BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(Marker.NUMBER)
        out += _F64.pack(float(value))
    elif isinstance(value, str):
        _encode_string_value(out, value)
    elif isinstance(value, AMF0Date):
        out.append(Marker.DATE)
        out += _DATE.pack(value.milliseconds, value.timezone)
    elif isinstance(value, TypedObject):
        out.append(Marker.TYPED_OBJECT)
        _encode_key(out, value.class_name)
        _encode_properties(out, value.properties)
    elif isinstance(value, dict):
        _encode_mapping(out, value)
    elif isinstance(value, list | tuple):
        out.append(Marker.STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_value(out, item)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def _encode_string_value(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8")
    if isinstance(value, XMLDocument):
        out.append(Marker.XML_DOCUMENT)
        out += _U32.pack(len(raw))
    elif len(raw) > _MAX_U16:
        out.append(Marker.LONG_STRING)
        out += _U32.pack(len(raw))
    else:
        out.append(Marker.STRING)
        out += _U16.pack(len(raw))
    out += raw


def _encode_mapping(out: bytearray, value: dict[Any, Any]) -> None:
    if isinstance(value, ECMAArray):
        out.append(Marker.ECMA_ARRAY)
        out += _U32.pack(len(value))
    else:
        out.append(Marker.OBJECT)
    _encode_properties(out, value)


def _encode_key(out: bytearray, key: str) -> None:
    raw = key.encode("utf-8")
    if len(raw) > _MAX_U16:
        raise ValueError("AMF0 property name longer than 65535 bytes")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(out: bytearray, properties: dict[Any, Any]) -> None:
    for key, item in properties.items():
        _encode_key(out, str(key))
        _encode_value(out, item)
    out += _OBJECT_END_BYTES


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode(
    data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> list[Any]:
    """Decode every value in ``data`` (a command or data message body)."""
    decoder = AMF0Decoder(data, max_depth=max_depth)
    values = []
    while not decoder.at_end:
        values.append(decoder.read_value())
    return values


def decode_value(
    data: bytes | bytearray | memoryview, offset: int = 0, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[Any, int]:
    """Decode one value at ``offset``; return it and the offset just past it."""
    decoder = AMF0Decoder(data, offset, max_depth=max_depth)
    value = decoder.read_value()
    return value, decoder.offset


class AMF0Decoder:
    """Reads AMF0 values one by one from a buffer, keeping the reference table between them."""

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be in 1..{MAX_DEPTH_LIMIT}, not {max_depth}")
        self._data = bytes(data)
        self._pos = offset
        self._max_depth = max_depth
        self._depth = 0
        self._refs: list[Any] = []
        self._open_refs: set[int] = set()

    @property
    def offset(self) -> int:
        """Offset of the next unread byte."""
        return self._pos

    @property
    def at_end(self) -> bool:
        """Whether every byte has been read."""
        return self._pos >= len(self._data)

    def read_value(self) -> Any:
        """Decode the next value; raise :class:`AMFDecodeError` if it is malformed."""
        marker = self._take(1, "value marker")[0]
        match marker:
            case Marker.NUMBER:
                return _F64.unpack(self._take(8, "number"))[0]
            case Marker.BOOLEAN:
                return self._take(1, "boolean")[0] != 0
            case Marker.STRING:
                return self._read_utf8(self._read_u16("string length"), "string")
            case Marker.NULL:
                return None
            case Marker.UNDEFINED:
                return UNDEFINED
            case Marker.REFERENCE:
                return self._read_reference()
            case Marker.DATE:
                milliseconds, timezone = _DATE.unpack(self._take(10, "date"))
                return AMF0Date(milliseconds, timezone)
            case Marker.LONG_STRING:
                return self._read_utf8(self._read_u32("long string length"), "long string")
            case Marker.XML_DOCUMENT:
                length = self._read_u32("XML document length")
                return XMLDocument(self._read_utf8(length, "XML document"))
            case Marker.OBJECT | Marker.ECMA_ARRAY | Marker.STRICT_ARRAY | Marker.TYPED_OBJECT:
                return self._read_complex(marker)
            case Marker.OBJECT_END:
                raise AMFDecodeError(f"unexpected AMF0 object end at offset {self._pos - 1}")
        raise AMFDecodeError(f"unsupported AMF0 marker 0x{marker:02x} at offset {self._pos - 1}")

    # -- complex values: nesting depth and the reference table (AMF0 2.9) ---------------------

    def _read_complex(self, marker: int) -> Any:
        if self._depth >= self._max_depth:
            raise AMFDecodeError(
                f"AMF0 value nested deeper than {self._max_depth} levels at offset {self._pos - 1}"
            )
        index = len(self._refs)
        self._refs.append(None)
        self._open_refs.add(index)
        self._depth += 1
        try:
            value = self._read_complex_body(marker, index)
        finally:
            self._depth -= 1
            self._open_refs.discard(index)
        self._refs[index] = value
        return value

    def _read_complex_body(self, marker: int, index: int) -> Any:
        if marker == Marker.OBJECT:
            properties: dict[str, Any] = {}
            self._read_properties(properties)
            return properties
        if marker == Marker.ECMA_ARRAY:
            array = ECMAArray()
            count = self._read_u32("ECMA array count")
            self._read_properties(array, ecma_count=count)
            return array
        if marker == Marker.STRICT_ARRAY:
            return self._read_strict_array()
        class_name = self._read_utf8(self._read_u16("class name length"), "class name")
        typed = TypedObject(class_name)
        self._read_properties(typed.properties)
        return typed

    def _read_properties(self, target: dict[str, Any], ecma_count: int | None = None) -> None:
        # AMF0 2.5: name/value pairs closed by an empty name and the object end marker.
        while True:
            if ecma_count is not None and self.at_end and len(target) >= ecma_count:
                return  # some encoders end an ECMA array at its count, without the end marker
            key = self._read_utf8(self._read_u16("property name length"), "property name")
            if not key and self._peek_object_end():
                self._pos += 1
                return
            target[key] = self.read_value()

    def _read_strict_array(self) -> list[Any]:
        count = self._read_u32("strict array count")
        if count > len(self._data) - self._pos:  # every item takes at least one byte
            raise AMFDecodeError(f"AMF0 strict array is truncated at offset {self._pos}")
        return [self.read_value() for _ in range(count)]

    def _read_reference(self) -> Any:
        index = self._read_u16("reference")
        if index >= len(self._refs) or index in self._open_refs:
            raise AMFDecodeError(
                f"AMF0 reference to unknown object {index} at offset {self._pos - 3}"
            )
        return self._refs[index]

    # -- primitives ---------------------------------------------------------------------------

    def _peek_object_end(self) -> bool:
        return self._pos < len(self._data) and self._data[self._pos] == Marker.OBJECT_END

    def _take(self, size: int, what: str) -> bytes:
        start = self._pos
        end = start + size
        if end > len(self._data):
            raise AMFDecodeError(f"AMF0 {what} is truncated at offset {start}")
        self._pos = end
        return self._data[start:end]

    def _read_u16(self, what: str) -> int:
        value: int = _U16.unpack(self._take(2, what))[0]
        return value

    def _read_u32(self, what: str) -> int:
        value: int = _U32.unpack(self._take(4, what))[0]
        return value

    def _read_utf8(self, size: int, what: str) -> str:
        # Lenient on bad UTF-8 (old encoders write Latin-1 metadata): replace, don't fail.
        return self._take(size, what).decode("utf-8", errors="replace")
