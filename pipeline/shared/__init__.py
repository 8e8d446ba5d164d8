"""State shared by all workers through Redis.

* ``health``: whether Redis answers, per feature; a fallback logged once and counted;
* ``percentiles``: the latency_percentile policy's duration counts, pooled per slot;
* ``state``: what the worker hands the policies (``policies.percentiles.SharedState``).

Redis is never on a decision's path: the policies read what a background thread fetched
last, and fall back to each worker's own state while Redis is unreachable. May import
``config`` and the policies' shared-state protocols; no stage, no Kafka or Faust.
"""
