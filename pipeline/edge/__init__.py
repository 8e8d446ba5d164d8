"""Code for the applications' side, not the backend: ASGI and WSGI middlewares that strip
or re-root untrusted W3C / B3 trace headers at an application's edge (``context``).

Imports the OpenTelemetry API only; nothing of ``pipeline`` imports it.
"""
