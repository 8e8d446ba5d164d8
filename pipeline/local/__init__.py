"""Tooling for one machine, apart from the product: the Docker-free local stack
(``stack``), ``spansieve run`` (``run``) and the demo trace it sends (``demo``).

Only ``pipeline.cli``, the benchmark and tests import it.
"""
