"""How every part of spansieve reads OpenSearch's answers: with orjson."""

from __future__ import annotations

import orjson
from opensearchpy.exceptions import SerializationError
from opensearchpy.serializer import JSONSerializer

_ALL_INDEXED = frozenset({'{"errors":false,', b'{"errors":false,'})


class OrjsonSerializer(JSONSerializer):
    """opensearch-py's serializer with orjson: a _bulk response lists every item, and the
    standard library's json spends milliseconds per request reading it.

    A ``_bulk`` answer in which every item succeeded (with our ``filter_path`` it starts
    ``{"errors":false``) is read as ``{"errors": false}`` alone: the indexer needs no
    more, and decoding thousands of item objects per request cost the sink ~1 µs per
    document, most of it in the garbage collector.
    """

    def loads(self, s: str | bytes) -> object:
        if s[:16] in _ALL_INDEXED:
            return {"errors": False}
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(s, exc) from exc
