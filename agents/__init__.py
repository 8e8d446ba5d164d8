"""The Faust worker: app factory and its agents (sampler, sink)."""
