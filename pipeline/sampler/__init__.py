"""The tail sampler's core: per-trace buffers, due traces, decisions, the decision cache.

* ``core``: ``TraceSampler``, handed spans messages and ticks by the Faust agent;
* ``buffer``: pieces appended per trace in a RocksDB database per partition;
* ``storage``: those databases, opened with rocksdict (no Faust table);
* ``decisions``: the decision cache, written in batches;
* ``policy_source``: the policy file, its hot reload and derived timings;
* ``metrics``: its Prometheus metrics.

Storage, clock and outputs come from the caller, so the core runs in one process with
plain rocksdict databases (``tests/unit/sampler``). May import ``config``, ``wire``,
``policies`` and rocksdict; not Faust, Kafka clients or ``agents``.
"""
