"""The Faust worker: app factory, topics and tables, and thin agents (sampler, sink).

Agents hand bytes to the stage packages (``pipeline.sampler``, ``pipeline.sink``) and pass
them Faust's tables and Kafka topics; no sampling or indexing logic lives here.
"""
