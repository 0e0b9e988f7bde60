"""syncserver: a self-hostable Sync 1.1 (Weave) storage and user server.

The WSGI application is built by :func:`syncserver.app.make_app`, which
PasteDeploy finds through the ``egg:syncserver`` entry point.
"""

__version__ = "0.1.0"
