"""Helpers for the API Gateway end-to-end tests: invoke an HTTP API by Host header or by
the path form, a tiny echo backend, and a Lambda function that echoes its event."""
from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ECHO_SRC = r'''
import base64, json, time
def handler(event, context):
    q = event.get("queryStringParameters") or {}
    mode = q.get("mode")
    if mode == "bare":
        return "hello"
    if mode == "json":
        return {"hello": "world"}
    if mode == "fail":
        raise RuntimeError("boom")
    if mode == "sleep":
        time.sleep(float(q.get("s", "2")))
        return {}
    if mode == "binary":
        return {"statusCode": 200, "headers": {"content-type": "image/png"},
                "body": base64.b64encode(b"\x89PNG\x00\x01").decode(), "isBase64Encoded": True}
    if mode == "multi":
        return {"statusCode": 202, "headers": {"x-s": "1"}, "multiValueHeaders": {"x-m": ["a", "b"]},
                "cookies": ["a=1", "b=2"], "body": "multi"}
    if mode == "malformed":
        return {"statusCode": "abc"}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
'''


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def all(self, name):
        return [v for k, v in self.header_list if k.lower() == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


def call(server, api_id, method, path, body=None, headers=None, path_form=False, timeout=30) -> Resp:
    """One request to an HTTP API: Host `{api}.execute-api.localhost:{port}` (as the
    ApiEndpoint says), or the documented path form `/_aws/execute-api/{api}/…`."""
    headers = dict(headers or {})
    if path_form:
        path = f"/_aws/execute-api/{api_id}{path}"
    else:
        headers.setdefault("Host", f"{api_id}.execute-api.localhost:{server.port}")
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return Resp(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


class EchoBackend:
    """An HTTP backend on a loopback port answering with what it received as JSON; paths
    under /stream answer chunked in several pieces."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                record = {"method": self.command, "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body.decode(errors="replace")}
                seen.append(record)
                if "/stream" in self.path:
                    self.send_response(200)
                    self.send_header("content-type", "text/plain")
                    self.send_header("transfer-encoding", "chunked")
                    self.send_header("x-backend", "echo")
                    self.end_headers()
                    for i in range(5):
                        chunk = f"chunk{i};".encode()
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                out = json.dumps(record).encode()
                self.send_response(201 if self.command == "POST" else 200)
                self.send_header("content-type", "application/json")
                self.send_header("x-backend", "echo")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
