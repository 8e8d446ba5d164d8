"""State shared by all workers through Redis.

* ``health``: whether Redis answers, per feature; a fallback logged once and counted;
* ``percentiles``: the latency_percentile policy's duration counts, pooled per slot;
* ``budgets``: token buckets of the whole fleet, spent from local leases;
* ``state``: what the worker hands the policies (``policies.shared.SharedState``);
* ``lazy``: the same, connected on first use.

Redis is never on a decision's path: the policies read what a background thread fetched
last, and fall back to each worker's own state while Redis is unreachable. May import
``config`` and the policies' shared-state protocols; no stage, no Kafka or Faust.
"""
