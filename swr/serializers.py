"""Serializers for byte storages; see :mod:`storage.serializers` for the details.

Re-exported here so applications can import everything from ``swr``.
"""

from swr.storage.serializers import (
    JSONSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    ZstdSerializer,
    default_serializer,
)

__all__ = [
    "JSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "ZstdSerializer",
    "default_serializer",
]
