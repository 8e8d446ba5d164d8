"""Kafka plumbing shared by the gateway, the worker and the tools.

* ``topics``: creates the product's topics (and the worker's changelogs) idempotently.
* ``producer``: an idempotent, acks=all confluent-kafka producer whose sends are awaitable.

May import confluent-kafka and ``pipeline.config``; nothing of the stages.
"""
