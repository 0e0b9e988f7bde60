"""The web layer: what sits between an HTTP request and the controllers.

Authentication schemes (HTTP Basic for Sync 1.1, Hawk for Sync 1.5), CSRF
protection of the HTML forms, the access log, the client's address and
public URL behind trusted proxies, storage-node admission and the metrics
endpoint. Nothing below this layer (backends, protocol rules) imports it.
"""
