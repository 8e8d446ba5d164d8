"""The OpenSearch trace store, as every reader and writer sees it.

* ``fields``: the document schema's field names and encodings (ids, times);
* ``indices``: store names, index templates, aliases and rollover names;
* ``setup``: ``ensure_store``, the idempotent install behind ``spansieve store init``;
* ``lifecycle``: ISM policy or the worker's own rollover and deletion;
* ``client``: the orjson serializer every OpenSearch client of ours uses.

May import ``config`` and opensearch-py; no other stage.
"""
