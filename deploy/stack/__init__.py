"""Config of the Docker-free local stack (Maven poms, server config templates): data only.

Installed as the package ``pipeline.local.stack_files`` (pyproject's package-dir), read by
``pipeline.local.stack`` through importlib.resources. Maven's output never lands here.
"""
