"""Shared machinery of the fake provider servers.

A fake is a real HTTP server on 127.0.0.1 (random port) running in a thread. Subclasses declare
routes with :meth:`FakeProviderServer.route`; handlers receive a :class:`FakeRequest` and return
``(status, body, headers)``. Every request is recorded, and faults can be queued so tests can make
the next call answer 5xx/429, hang past the client's timeout or drop the connection.

Fakes are strict on purpose: a handler answers 400/401/403/404/409 wherever the real API would, so a
client that drifts from the documented API fails its tests.
"""
import collections
import json
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class FakeRequest:
    def __init__(self, method, path, query, headers, body, params):
        self.method = method
        self.path = path
        self.query = query  # dict of lists
        self.headers = headers  # case-insensitive (email.message.Message)
        self.body = body
        self.params = params  # path parameters from the route pattern

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    def form(self):
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def multipart(self):
        """Parse a multipart/form-data body into ``{name: (filename, content_type, bytes)}``."""
        ctype = self.headers.get("Content-Type", "")
        match = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.startswith("multipart/form-data") or not match:
            return None
        boundary = b"--" + match.group(1).encode()
        parts = {}
        for chunk in self.body.split(boundary)[1:]:
            if chunk.startswith(b"--"):
                break
            head, _sep, content = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
            if content.endswith(b"\r\n"):
                content = content[:-2]
            disposition = {}
            part_type = "text/plain"
            for line in head.decode("utf-8", "replace").split("\r\n"):
                key, _c, value = line.partition(":")
                if key.lower() == "content-disposition":
                    for item in value.split(";")[1:]:
                        k, _e, v = item.strip().partition("=")
                        disposition[k] = v.strip('"')
                elif key.lower() == "content-type":
                    part_type = value.strip()
            if "name" in disposition:
                parts[disposition["name"]] = (disposition.get("filename"), part_type, content)
        return parts


def json_response(status, data, headers=None):
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return status, json.dumps(data).encode(), hdrs


class FakeProviderServer:
    """Base class: start with :meth:`start` (or as a context manager), stop with :meth:`stop`."""

    name = "fake"

    def __init__(self):
        self._routes = []
        self.requests = []  # every FakeRequest received, in order
        # queued faults: (kind, value, body, headers, matcher), kind status / delay / drop / lose
        self.faults = collections.deque()
        self.lock = threading.RLock()
        self.callbacks_sent = []  # (url, status) of callbacks delivered
        self.drop_callbacks = 0  # how many coming callbacks to lose
        self.outbox = []  # callbacks waiting for flush_callbacks(): (url, body bytes, headers)
        # Where callbacks go: None = real HTTP POST to the url; or a callable(url, body, headers)
        # returning an HTTP status (the Odoo suite passes one that enters our controller's code
        # in the test's own transaction).
        self.callback_sink = None
        self.register_routes()
        self._httpd = None
        self._thread = None

    # --- routing ------------------------------------------------------------------------------

    def register_routes(self):
        """Subclasses call :meth:`route` here."""

    def route(self, method, pattern, handler):
        """``pattern`` is a path with ``{name}`` placeholders (matching one segment, percent-encoded)."""
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        self._routes.append((method.upper(), re.compile(regex), handler))

    # --- fault injection ------------------------------------------------------------------------

    def fail_next(self, status=503, body=None, headers=None, times=1, on=None):
        """Answer the next ``times`` requests (matching ``on``) with ``status`` instead."""
        for _i in range(times):
            self.faults.append(("status", status, body, headers or {}, self._matcher(on)))

    def delay_next(self, seconds, times=1, on=None):
        """Receive the request (the provider acts), then answer only after ``seconds``."""
        for _i in range(times):
            self.faults.append(("delay", seconds, None, None, self._matcher(on)))

    def drop_next(self, times=1, on=None):
        """Close the connection before the request is handled: the provider never saw it."""
        for _i in range(times):
            self.faults.append(("drop", None, None, None, self._matcher(on)))

    def lose_response_next(self, times=1, on=None):
        """Handle the request (the provider acts), then close the connection without answering."""
        for _i in range(times):
            self.faults.append(("lose", None, None, None, self._matcher(on)))

    @staticmethod
    def _matcher(on):
        """``on``: None (any request) or ``(METHOD, path regex)``; the fault waits for a match."""
        if on is None:
            return None
        method, path_regex = on
        return method.upper(), re.compile(path_regex)

    def _take_fault(self, method, path):
        with self.lock:
            for fault in self.faults:
                matcher = fault[4]
                if matcher is None or (matcher[0] == method and matcher[1].search(path)):
                    self.faults.remove(fault)
                    return fault
        return None

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self):
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                server._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"{self.name}-fake",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd:
            # Wake serve_forever at once instead of waiting for its 0.5 s poll.
            self._httpd._BaseServer__shutdown_request = True
            try:
                socket.create_connection(self._httpd.server_address[:2], timeout=0.2).close()
            except OSError:
                pass
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- dispatch -------------------------------------------------------------------------------

    def _dispatch(self, handler):
        parsed = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        fault = self._take_fault(handler.command, parsed.path)
        if fault and fault[0] == "drop":
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        route_path = parsed.path
        status, payload, headers = 404, b'{"message": "no such endpoint"}', {"Content-Type": "application/json"}
        matched = False
        for method, regex, func in self._routes:
            match = regex.match(route_path)
            if match and method == handler.command:
                params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                request = FakeRequest(handler.command, route_path, query, handler.headers, body, params)
                with self.lock:
                    self.requests.append(request)
                if fault and fault[0] == "delay":
                    time.sleep(fault[1])  # recorded first: the provider did receive it
                with self.lock:
                    if fault and fault[0] == "status":
                        status, payload, headers = fault[1], fault[2], dict(fault[3])
                        if payload is None:
                            payload = json.dumps({"message": f"injected {fault[1]}"}).encode()
                        elif not isinstance(payload, bytes):
                            payload = json.dumps(payload).encode()
                        headers.setdefault("Content-Type", "application/json")
                    else:
                        status, payload, headers = func(request)
                matched = True
                break
        if not matched and any(regex.match(route_path) for _m, regex, _f in self._routes):
            status, payload = 405, b'{"message": "method not allowed"}'
        if isinstance(payload, str):
            payload = payload.encode()
        if fault and fault[0] == "lose":  # acted, but the answer never reaches the client
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        try:
            self._write(handler, status, payload, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): nothing to answer

    @staticmethod
    def _write(handler, status, payload, headers):
        """Headers and body in one write: two small writes on a kept-alive connection meet Nagle's
        algorithm and the client's delayed ACK, costing ~40 ms per request."""
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload or b"")))
        handler._headers_buffer.append(b"\r\n")
        if handler.command != "HEAD" and payload:
            handler._headers_buffer.append(payload)
        handler.flush_headers()

    # --- helpers for subclasses ---------------------------------------------------------------------

    def requests_to(self, method, path_regex):
        return [r for r in self.requests if r.method == method and re.search(path_regex, r.path)]

    def queue_callback(self, url, body, headers=None):
        """Queue a callback; the test delivers it from its own thread with :meth:`flush_callbacks`."""
        if not url:
            return
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        with self.lock:
            self.outbox.append((url, body, hdrs))

    def flush_callbacks(self, timeout=10):
        """Deliver queued callbacks in order, losing ``drop_callbacks`` of them. Returns the statuses."""
        with self.lock:
            pending, self.outbox = self.outbox, []
        statuses = []
        for url, body, headers in pending:
            if self.drop_callbacks:
                self.drop_callbacks -= 1
                self.callbacks_sent.append((url, None))
                statuses.append(None)
                continue
            if self.callback_sink is not None:
                status = self.callback_sink(url, body, headers)
            else:
                status = requests.post(url, data=body, headers=headers, timeout=timeout).status_code
            self.callbacks_sent.append((url, status))
            statuses.append(status)
        return statuses
