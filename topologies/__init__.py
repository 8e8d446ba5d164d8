"""Package data: example policy files and the estates the load generator plays, installed as
``pipeline.topologies`` (read with ``importlib.resources``)."""
