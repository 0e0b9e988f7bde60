"""A tiny real reverse proxy, as nginx is configured in front of a Sync server.

It listens on 127.0.0.1, strips a path prefix, and forwards each request to
the backend over a new connection with ``Host`` set to the backend's
address; what the client used goes in ``X-Forwarded-Host``,
``X-Forwarded-Proto`` (it pretends to terminate TLS: ``https``),
``X-Forwarded-Prefix`` and ``X-Forwarded-For``. ``source_address`` picks the
address it connects *from* (any of 127.0.0.0/8), so one server can see a
trusted and an untrusted proxy.
"""

import http.client
import http.server
import threading

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "upgrade", "trailer", "host", "content-length"}


class ForwardingProxy:
    def __init__(self, backend_port, prefix="/", source_address="127.0.0.1", proto="https"):
        self.backend_port = backend_port
        self.prefix = prefix.rstrip("/")
        self.source_address = source_address
        self.proto = proto
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                if not self.path.startswith(proxy.prefix + "/"):
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() not in HOP_BY_HOP}
                headers["X-Forwarded-Host"] = self.headers["Host"]
                headers["X-Forwarded-Proto"] = proxy.proto
                headers["X-Forwarded-For"] = self.client_address[0]
                if proxy.prefix:
                    headers["X-Forwarded-Prefix"] = proxy.prefix
                backend = http.client.HTTPConnection(
                    "127.0.0.1", proxy.backend_port, timeout=60,
                    source_address=(proxy.source_address, 0))
                try:
                    backend.request(self.command, self.path[len(proxy.prefix):], body=body,
                                    headers=headers)
                    answer = backend.getresponse()
                    data = answer.read()
                    self.send_response(answer.status, answer.reason)
                    for name, value in answer.getheaders():
                        if name.lower() not in HOP_BY_HOP:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    backend.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_HEAD = _forward

        return Handler
