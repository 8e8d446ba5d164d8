"""Who may see which traces: role-based access control for the query server.

* ``roles``: the roles YAML (services by name or glob, actions, SSO users and groups) and
  the tokens file (bearer token -> principal name and roles);
* ``access``: what one principal may do: per action, the services it may see;
* ``authenticate``: a request's principal, from a bearer token or, only from trusted proxy
  addresses, from the proxy's user and groups headers;
* ``guard``: the wrapper around each API handler: 401/403, the request's ``Access`` for
  the handler's filters, and one audit log line per request;
* ``placeholders``: spans of services outside a role, shown with their timing only.

Off (everyone may do everything, as before) unless ``query_roles`` names a roles file.
May import ``config`` and Starlette; nothing else of the product.
"""
