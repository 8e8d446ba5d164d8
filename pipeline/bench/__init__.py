"""`spansieve bench`: per-stage throughput next to ceilings measured in the same run.

One module per stage (``gateway``, ``sampler``, ``sink``, ``query``, ``endtoend``), the
suite that runs them (``suite``), the report (``report``) and the scale model (``scale``).
Tooling apart from the product: it may import every stage and ``pipeline.local``; only
``pipeline.cli`` imports it.
"""
