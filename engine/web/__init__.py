"""The web view: executions, their graphs, events and timelines, and actions, in a browser.

`stepwise serve` mounts `web_routes` beside the Step Functions API on the
same Starlette application: pages are GETs under ``/`` and ``/ui/...``
(``POST /`` stays the API). Modules: `engine.web.pages` (routes and
pages), `engine.web.render` (HTML, every payload escaped), `engine.web.graph`
(a definition's graph and an execution's per-state outcomes),
`engine.web.auth` (sign-in, session cookie, CSRF) and ``static/`` (one
script, one stylesheet and the vendored dagre layout library).
"""

from engine.web.auth import SESSION_COOKIE, Sessions
from engine.web.graph import machine_graph, state_outcomes
from engine.web.pages import web_routes

__all__ = ["SESSION_COOKIE", "Sessions", "machine_graph", "state_outcomes", "web_routes"]
