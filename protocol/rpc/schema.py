"""Declaring an RPC message class and moving it to and from the wire: the `Message` base, the
`wire_key` field metadata and the `wire_message` class decorator, `to_wire` / `from_wire`, and
`RpcDecodeError`. The messages themselves are in `protocol.rpc.messages`.

Theory of operation
-------------------
Every message is a frozen, keyword-only dataclass with snake_case attributes. Each field names
its wire key in `metadata=wire_key(...)` (ngrok-go's spelling, which is what `to_wire` emits).
`wire_message` runs once per class, when the class is defined: it reads the fields and their
annotations and builds a small table of per-field decode/encode functions, so `to_wire` and
`from_wire` do no reflection per call.

Decoding follows Go's `encoding/json`, the most lenient peer we must accept:

* keys match without regard to case (Go sends `Authtoken`, Rust `AuthToken`);
* unknown keys are ignored (newer peers add fields);
* a missing key, or a JSON null, leaves the field at its default;
* a value of the wrong type raises `RpcDecodeError` naming the field (`Auth.Extra.OS`).

Values are checked cheaply by kind: str, int (int64 range; a bool is not an int), bool, lists,
objects. Free-form members (`Bind.Opts`, `Unbind.Extra`) are passed through as decoded. An
annotation with no codec is a `TypeError` when the class is defined, not when it is used.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, NoneType, UnionType
from typing import Any, ClassVar, TypeVar

__all__ = [
    "Message",
    "RpcDecodeError",
    "from_wire",
    "to_wire",
    "wire_key",
    "wire_message",
]


_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


class RpcDecodeError(ValueError):
    """An RPC body or ProxyHeader that cannot be decoded.

    `field` is the dotted wire path of the offending value (`"Auth.Extra.OS"`), or `None` when
    the fault is in the framing or the encoding rather than in one field.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- the per-class wire table -------------------------------------------------------------

_Decode = Callable[[object, str], object]
_Encode = Callable[[Any], object]


@dataclass(frozen=True, slots=True)
class _WireField:
    attr: str
    wire: str
    decode: _Decode  # (non-null wire value, dotted path) -> Python value, or RpcDecodeError
    encode: _Encode  # Python value -> wire value
    omit_none: bool  # leave the key out when the value is None (PatchTunnelState)


@dataclass(frozen=True, slots=True)
class _WireTable:
    fields: tuple[_WireField, ...]
    by_key: Mapping[str, _WireField]  # lower-cased wire names and aliases


class Message:
    """Base of every RPC message; `wire_message` fills in `_wire` when the class is defined."""

    __slots__ = ()
    _wire: ClassVar[_WireTable]


M = TypeVar("M", bound=Message)


def wire_key(name: str, *aliases: str, omit_none: bool = False) -> dict[str, object]:
    """Field metadata: the wire key ngrok-go sends, other spellings accepted on decode."""
    return {"wire": name, "aliases": aliases, "omit_none": omit_none}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _wrong(where: str, expected: str, value: object) -> RpcDecodeError:
    return RpcDecodeError(f"{where}: expected {expected}, got {_kind(value)}", field=where)


def _decode_str(value: object, where: str) -> object:
    if type(value) is str:
        return value
    raise _wrong(where, "a string", value)


def _decode_int(value: object, where: str) -> object:
    if type(value) is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        raise RpcDecodeError(f"{where}: integer {value} is out of the int64 range", field=where)
    raise _wrong(where, "an integer", value)


def _decode_bool(value: object, where: str) -> object:
    if type(value) is bool:
        return value
    raise _wrong(where, "a boolean", value)


def _decode_any(value: object, where: str) -> object:
    return value


def _identity(value: Any) -> object:
    return value


def _decode_object(value: object, where: str) -> object:
    if type(value) is dict:
        return value
    raise _wrong(where, "an object", value)


def _to_list(value: Any) -> object:
    return list(value)


def _copy_dict(value: Any) -> object:
    return dict(value)


def _str_map_decoder(value: object, where: str) -> object:
    if type(value) is not dict:
        raise _wrong(where, "an object", value)
    for key, item in value.items():
        if type(key) is not str or type(item) is not str:
            raise _wrong(f"{where}[{key!r}]", "a string", item)
    return value


_SCALARS: Mapping[object, _Decode] = MappingProxyType(
    {str: _decode_str, int: _decode_int, bool: _decode_bool, Any: _decode_any}
)


def _list_codec(item_type: object, owner: str) -> tuple[_Decode, _Encode]:
    item_decode, item_encode = _codec_for(item_type, owner)

    def decode(value: object, where: str) -> object:
        if type(value) is not list:
            raise _wrong(where, "an array", value)
        return tuple(item_decode(item, f"{where}[{index}]") for index, item in enumerate(value))

    if item_encode is _identity:
        return decode, _to_list

    def encode(value: Any) -> object:
        return [item_encode(item) for item in value]

    return decode, encode


def _message_codec(cls: type[Message]) -> tuple[_Decode, _Encode]:
    def decode(value: object, where: str) -> object:
        return _decode_message(cls, value, where)

    return decode, to_wire


def _codec_for(tp: object, owner: str) -> tuple[_Decode, _Encode]:
    """The decode/encode pair for one annotation; called once per field at class definition."""
    if tp in _SCALARS:
        return _SCALARS[tp], _identity
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is UnionType and len(args) == 2 and NoneType in args:
        # `X | None`: None never reaches the decoder (null means "the default", which is None).
        inner = args[0] if args[1] is NoneType else args[1]
        inner_decode, inner_encode = _codec_for(inner, owner)
        if inner_encode is _identity:
            return inner_decode, _identity

        def encode_optional(value: Any) -> object:
            return None if value is None else inner_encode(value)

        return inner_decode, encode_optional
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _list_codec(args[0], owner)
    if origin is dict and args == (str, str):
        return _str_map_decoder, _copy_dict
    if origin is dict and args == (str, Any):
        return _decode_object, _copy_dict
    if isinstance(tp, type) and issubclass(tp, Message):
        return _message_codec(tp)
    raise TypeError(f"{owner}: no wire codec for annotation {tp!r}")


def wire_message(cls: type[M]) -> type[M]:
    """Build `cls._wire` from the dataclass fields; a class decorator, applied once."""
    hints = typing.get_type_hints(cls)
    fields: list[_WireField] = []
    by_key: dict[str, _WireField] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # cls is a dataclass here
        wire = f.metadata["wire"]
        decode, encode = _codec_for(hints[f.name], f"{cls.__name__}.{f.name}")
        entry = _WireField(f.name, wire, decode, encode, bool(f.metadata["omit_none"]))
        fields.append(entry)
        for key in (wire, *f.metadata["aliases"]):
            by_key[key.lower()] = entry
    cls._wire = _WireTable(tuple(fields), MappingProxyType(by_key))
    return cls


def _decode_message(cls: type[M], obj: object, where: str) -> M:
    if type(obj) is not dict:
        raise _wrong(where, "an object", obj)
    by_key = cls._wire.by_key
    kwargs: dict[str, object] = {}
    for key, value in obj.items():
        if value is None or type(key) is not str:
            continue  # null means "the default"; non-string msgpack keys are never ours
        entry = by_key.get(key.lower())
        if entry is not None:
            kwargs[entry.attr] = entry.decode(value, f"{where}.{entry.wire}")
    return cls(**kwargs)


def from_wire(cls: type[M], obj: object) -> M:
    """Build a `cls` from a decoded JSON object / msgpack map.

    Keys match case-insensitively; unknown keys are ignored; missing keys and nulls give the
    default. Raises `RpcDecodeError` (naming the field) for a value of the wrong type, or when
    `obj` is not a dict at all.
    """
    return _decode_message(cls, obj, cls.__name__)


def to_wire(msg: Message) -> dict[str, object]:
    """The message as a dict with ngrok-go's key names, nested messages as nested dicts."""
    out: dict[str, object] = {}
    for entry in type(msg)._wire.fields:
        value = getattr(msg, entry.attr)
        if value is None and entry.omit_none:
            continue
        out[entry.wire] = entry.encode(value)
    return out
