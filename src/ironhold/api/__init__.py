"""The HTTP edge: OpenAI routes, admin routes, health and ``/metrics``.

The only layer that knows HTTP status codes and the OpenAI error body.
"""

from ironhold.api.app import create_app
from ironhold.api.server import run_server, serve_until_stopped, start_server

__all__ = ["create_app", "run_server", "serve_until_stopped", "start_server"]
