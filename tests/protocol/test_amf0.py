"""AMF0 encoding/decoding: exact bytes, round trips, truncation, depth and bad markers."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.rtmp import amf0
from ingest.rtmp.amf0 import UNDEFINED, AMF0Date, ECMAArray, TypedObject, XMLDocument
from ingest.rtmp.errors import AMFDecodeError, RTMPProtocolError

ENCODINGS: list[tuple[Any, bytes]] = [
    (1.0, b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"),
    (-0.5, b"\x00\xbf\xe0\x00\x00\x00\x00\x00\x00"),
    (True, b"\x01\x01"),
    (False, b"\x01\x00"),
    ("", b"\x02\x00\x00"),
    ("live", b"\x02\x00\x04live"),
    ("é", b"\x02\x00\x02\xc3\xa9"),
    ({"a": 1.0}, b"\x03\x00\x01a\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\x00\x00\x09"),
    ({}, b"\x03\x00\x00\x09"),
    (None, b"\x05"),
    (UNDEFINED, b"\x06"),
    (ECMAArray(b=False), b"\x08\x00\x00\x00\x01\x00\x01b\x01\x00\x00\x00\x09"),
    (["x", None], b"\x0a\x00\x00\x00\x02\x02\x00\x01x\x05"),
    ([], b"\x0a\x00\x00\x00\x00"),
    (AMF0Date(0.0, 0), b"\x0b" + bytes(8) + b"\x00\x00"),
    ("L" * 70000, b"\x0c\x00\x01\x11\x70" + b"L" * 70000),
    (XMLDocument("<a/>"), b"\x0f\x00\x00\x00\x04<a/>"),
    (TypedObject("C", {"k": None}), b"\x10\x00\x01C\x00\x01k\x05\x00\x00\x09"),
]


@pytest.mark.parametrize(("value", "encoded"), ENCODINGS)
def test_encode_exact_bytes(value: Any, encoded: bytes) -> None:
    assert amf0.encode(value) == encoded


@pytest.mark.parametrize(("value", "encoded"), ENCODINGS)
def test_decode_round_trip(value: Any, encoded: bytes) -> None:
    decoded, end = amf0.decode_value(encoded)
    assert decoded == value
    assert type(decoded) is type(value)
    assert end == len(encoded)
    assert amf0.decode(encoded + encoded) == [value, value]


def test_int_and_tuple_encode_as_number_and_strict_array() -> None:
    assert amf0.decode(amf0.encode(3, (1, 2))) == [3.0, [1.0, 2.0]]


def test_encode_rejects_unknown_types() -> None:
    with pytest.raises(TypeError, match=r"cannot encode set as AMF0"):
        amf0.encode({1, 2})


NESTED = {
    "app": "live",
    "fourCcList": ["av01", "vp09", "hvc1"],
    "videoFourCcInfoMap": ECMAArray(hvc1=1.0, av01=ECMAArray(x=UNDEFINED)),
    "when": AMF0Date(1.7e12, 0),
    "typed": TypedObject("T", {"list": [True, None, "s" * 300]}),
    "long": "ü" * 40000,
}


def test_enhanced_rtmp_connect_object_round_trips() -> None:
    """Enhanced RTMP clients send fourCcList strict arrays of strings in connect."""
    encoded = amf0.encode("connect", 1.0, NESTED)
    assert amf0.decode(encoded) == ["connect", 1.0, NESTED]


@pytest.mark.parametrize(("value", "encoded"), [*ENCODINGS, (NESTED, amf0.encode(NESTED))])
def test_truncation_at_every_offset_is_an_error(value: Any, encoded: bytes) -> None:
    step = max(1, len(encoded) // 2000)  # the long strings: sample the offsets
    for end in [*range(0, len(encoded), step), len(encoded) - 1]:
        if isinstance(value, ECMAArray) and end == len(encoded) - 3:
            continue  # see test_ecma_array_without_end_marker_at_end_of_body
        with pytest.raises(AMFDecodeError, match=r"^AMF0 .* is truncated at offset \d+$"):
            amf0.decode_value(encoded[:end])


def test_truncation_messages_name_the_part_and_offset() -> None:
    with pytest.raises(AMFDecodeError, match=r"^AMF0 number is truncated at offset 1$"):
        amf0.decode(b"\x00\x3f\xf0")
    with pytest.raises(AMFDecodeError, match=r"^AMF0 string is truncated at offset 3$"):
        amf0.decode(b"\x02\x00\x05ab")
    with pytest.raises(AMFDecodeError, match=r"^AMF0 value marker is truncated at offset 7$"):
        amf0.decode(b"\x03\x00\x01a\x05\x00\x00")


def test_amf_errors_are_protocol_errors() -> None:
    assert issubclass(AMFDecodeError, RTMPProtocolError)


def test_ecma_array_without_end_marker_at_end_of_body() -> None:
    """Some encoders end a top-level ECMA array after its count, without the end marker."""
    encoded = amf0.encode(ECMAArray(a=1.0))[:-3]
    assert amf0.decode(encoded) == [ECMAArray(a=1.0)]
    with pytest.raises(AMFDecodeError, match=r"truncated"):
        amf0.decode(amf0.encode({"o": ECMAArray(a=1.0)})[:-6])


def nested_lists(depth: int) -> bytes:
    return b"\x0a\x00\x00\x00\x01" * depth + b"\x05"


def test_depth_limit() -> None:
    assert amf0.decode(nested_lists(32)) != []
    with pytest.raises(
        AMFDecodeError, match=r"^AMF0 value nested deeper than 32 levels at offset 160$"
    ):
        amf0.decode(nested_lists(33))
    with pytest.raises(AMFDecodeError, match=r"nested deeper than 3 levels"):
        amf0.decode(amf0.encode({"a": {"b": {"c": {}}}}), max_depth=3)
    assert amf0.decode(amf0.encode({"a": {"b": {}}}), max_depth=3) == [{"a": {"b": {}}}]


def test_very_deep_input_fails_cleanly() -> None:
    with pytest.raises(AMFDecodeError, match=r"nested deeper"):
        amf0.decode(b"\x03\x00\x01a" * 100_000)


@pytest.mark.parametrize("marker", [0x04, 0x0D, 0x0E, 0x11, 0x12, 0xFF])
def test_unsupported_markers(marker: int) -> None:
    with pytest.raises(
        AMFDecodeError, match=f"^unsupported AMF0 marker 0x{marker:02x} at offset 4$"
    ):
        amf0.decode(b"\x03\x00\x01k" + bytes([marker]))


def test_object_end_outside_an_object() -> None:
    with pytest.raises(AMFDecodeError, match=r"^unexpected AMF0 object end at offset 0$"):
        amf0.decode(b"\x09")


def test_strict_array_count_larger_than_body() -> None:
    with pytest.raises(AMFDecodeError, match=r"^AMF0 strict array is truncated at offset 5$"):
        amf0.decode(b"\x0a\xff\xff\xff\xff\x05")


def test_references() -> None:
    """AMF0 2.9: a reference points at an earlier complex value by index."""
    obj = amf0.encode({"a": 1.0})
    assert amf0.decode(obj + b"\x07\x00\x00") == [{"a": 1.0}, {"a": 1.0}]
    with pytest.raises(AMFDecodeError, match=r"^AMF0 reference to unknown object 1 at offset 16$"):
        amf0.decode(obj + b"\x07\x00\x01")
    with pytest.raises(AMFDecodeError, match=r"^AMF0 reference to unknown object 0"):
        amf0.decode(b"\x03\x00\x01s\x07\x00\x00\x00\x00\x09")  # points at itself


def test_invalid_utf8_is_replaced() -> None:
    assert amf0.decode(b"\x02\x00\x02\xff\xfe") == ["\ufffd\ufffd"]


def test_decoder_reads_values_one_by_one() -> None:
    decoder = amf0.AMF0Decoder(amf0.encode("a", 2.0))
    assert decoder.read_value() == "a"
    assert decoder.offset == 4
    assert not decoder.at_end
    assert decoder.read_value() == 2.0
    assert decoder.at_end
