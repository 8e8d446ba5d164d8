"""Package data: OpenSearch index templates, the ISM policy and the JSON Schema of the policy
file, installed as ``pipeline.schemas`` (read with ``importlib.resources``)."""
