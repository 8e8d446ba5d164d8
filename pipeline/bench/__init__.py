"""`spansieve bench`: per-stage throughput next to ceilings measured in the same run."""
