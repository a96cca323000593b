"""Nimbus Python Lambda runtime bootstrap (standard library only).

Launched as `python3 -u bootstrap.py` with cwd = the function's code directory.
It speaks the AWS Lambda Runtime API (2018-06-01) at $AWS_LAMBDA_RUNTIME_API
and reproduces the observable behaviour of AWS's Python runtime interface
client (awslambdaric): handler loading and its Runtime.* init errors, the
context object, error payloads and their log lines, response marshalling and
the root `logging` handler. One process serves invocations in a loop, so
module-level state persists between warm invokes.
"""

import importlib
import json
import logging
import math
import os
import socket
import sys
import time
import traceback

_API = os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
_BASE = "/2018-06-01/runtime"
_LOG_FORMAT = (os.environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper()  # TEXT | JSON
_level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
_LOG_LEVEL = {None: "", "TRACE": "DEBUG"}.get(_level, _level).upper()
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_request_id = None  # current invocation, read by the logging filter
_tenant_id = None


class FaultException(Exception):
    def __init__(self, exception_type, msg, trace=None):
        super().__init__(msg)
        self.exception_type, self.msg, self.trace = exception_type, msg, trace


# ---------------------------------------------------------------- Runtime API

class _Headers(dict):
    """Response headers, looked up case-insensitively (keys are stored lower-cased)."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class RuntimeClient:
    """One persistent keep-alive HTTP/1.1 connection over a plain socket (importing
    http.client pulls in email and ssl: tens of ms on every cold start); reconnects once
    if the connection was closed."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.addr = (host or "127.0.0.1", int(port))
        self.sock, self.buf = None, b""

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self.buf += chunk

    def _read_until(self, marker):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(marker):]
                return out
            self._recv()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _exchange(self, method, path, body, headers):
        if isinstance(body, str):
            body = body.encode()
        body = body or b""
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % self.addr,
                 "Content-Length: %d" % len(body)]
        lines += ["%s: %s" % kv for kv in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        hdrs = _Headers()
        for line in head[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if hdrs.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    break
                parts.append(self._read_exact(size))
                self._read_exact(2)
            data = b"".join(parts)
        else:
            data = self._read_exact(int(hdrs.get("Content-Length") or 0))
        return status, hdrs, data

    def call(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.sock is None:  # no timeout: /next may block forever
                self.sock = socket.create_connection(self.addr)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buf = b""
            try:
                return self._exchange(method, path, body, headers)
            except (OSError, ValueError, IndexError):
                self.sock.close()
                self.sock = None
                if attempt == 2:
                    raise

    def next(self):
        status, headers, body = self.call("GET", _BASE + "/invocation/next")
        if status != 200:
            raise RuntimeError("Runtime API /next returned %d: %r" % (status, body))
        return body, headers

    def post_result(self, invoke_id, data, content_type):
        self.call("POST", "%s/invocation/%s/response" % (_BASE, invoke_id), data,
                  {"Content-Type": content_type})

    def post_error(self, invoke_id, error_result):
        self.call("POST", "%s/invocation/%s/error" % (_BASE, invoke_id),
                  to_json(error_result).encode(),
                  {"Content-Type": "application/json",
                   "Lambda-Runtime-Function-Error-Type": "Unhandled"})

    def post_init_error(self, error_result):
        self.call("POST", _BASE + "/init/error", to_json(error_result).encode(),
                  {"Content-Type": "application/json",
                   "Lambda-Runtime-Function-Error-Type": error_result["errorType"]})


# ---------------------------------------------------------------- marshalling

def _ensure_ascii():
    # awslambdaric emits raw UTF-8 (ensure_ascii=False) on python3.12 and later.
    env = os.environ.get("AWS_EXECUTION_ENV", "")
    if env.startswith("AWS_Lambda_python3."):
        try:
            return int(env.rsplit(".", 1)[1]) < 12
        except ValueError:
            pass
    return sys.version_info < (3, 12)


class _Encoder(json.JSONEncoder):
    def default(self, o):
        # simplejson-like Decimal support; a Decimal means its module is already loaded.
        decimal = sys.modules.get("decimal")
        if decimal is not None and isinstance(o, decimal.Decimal):
            if o.is_nan():
                return math.nan
            if o.is_finite() and o.as_tuple().exponent >= 0:
                return int(o)
            return float(o)
        return super().default(o)


_encoder = _Encoder(ensure_ascii=_ensure_ascii())
to_json = _encoder.encode


def unmarshal_request(body, content_type):
    if content_type and content_type != "application/json":
        return body
    try:
        return json.loads(body)
    except Exception as e:
        raise FaultException("Runtime.UnmarshalError", "Unable to unmarshal input: {}".format(e))


def marshal_response(response):
    if isinstance(response, bytes):
        return response, "application/unknown"
    try:
        return to_json(response).encode("utf-8"), "application/json"
    except Exception as e:
        raise FaultException("Runtime.MarshalError", "Unable to marshal response: {}".format(e))


# ---------------------------------------------------------------- context

class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id, self.cognito_identity_pool_id)


class Client(object):
    __slots__ = ["installation_id", "app_title", "app_version_name",
                 "app_version_code", "app_package_name"]


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]


def _obj(cls, d):
    if d is None:
        return None
    o = cls()
    for field in cls.__slots__:
        setattr(o, field, d.get(field))
    return o


def _parse_json_header(value, name):
    try:
        return json.loads(value)
    except Exception as e:
        raise FaultException("Runtime.LambdaContextUnmarshalError",
                             "Unable to parse {} JSON: {}".format(name, e))


class LambdaContext(object):
    def __init__(self, invoke_id, client_context, cognito_identity, deadline_ms,
                 invoked_function_arn=None, tenant_id=None):
        env = os.environ
        self.aws_request_id = invoke_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a str, as on AWS
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self.client_context = _obj(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _obj(Client, self.client_context.client)
        self.identity = _obj(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self._epoch_deadline_time_in_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        delta = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return delta if delta > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return ("LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
                "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
                "invoked_function_arn=%s,client_context=%s,identity=%s,tenant_id=%s])" % (
                    self.aws_request_id, self.log_group_name, self.log_stream_name,
                    self.function_name, self.memory_limit_in_mb, self.function_version,
                    self.invoked_function_arn, self.client_context, self.identity,
                    self.tenant_id))


# ---------------------------------------------------------------- errors & logging

def make_error(error_message, error_type, stack_trace, invoke_id=None):
    return {
        "errorMessage": error_message if error_message else "",
        "errorType": error_type if error_type else "",
        "requestId": invoke_id if invoke_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _user_frames(tb):
    """Traceback tuples with the leading bootstrap frames dropped (as awslambdaric)."""
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for i, frame in enumerate(frames):
        if "/bootstrap.py" not in frame[0]:
            return frames[i:]
    return frames


def build_fault_result(exc_info, invoke_id=None):
    etype, value, tb = exc_info
    return make_error(str(value), etype.__name__,
                      traceback.format_list(_user_frames(tb)), invoke_id)


def log_error(error_result):
    """Write an error the way awslambdaric's stdout log sink does: one line, \\r-joined."""
    if _LOG_FORMAT == "JSON":
        ts = time.strftime(_DATETIME_FORMAT, time.gmtime())
        lines = [to_json(dict({"timestamp": ts, "level": "ERROR"}, **error_result))]
    else:
        description = "[ERROR]"
        if error_result.get("errorType"):
            description += " " + error_result["errorType"]
        if error_result.get("errorMessage"):
            if error_result.get("errorType"):
                description += ":"
            description += " " + error_result["errorMessage"]
        lines = [description]
        if error_result.get("stackTrace") is not None:
            lines.append("Traceback (most recent call last):")
            for element in error_result["stackTrace"]:
                if element == "":
                    lines.append("")
                for line in element.splitlines():  # leading spaces -> NO-BREAK SPACE
                    stripped = line.lstrip(" ")
                    lines.append("\u00a0" * (len(line) - len(stripped)) + stripped)
    sys.stdout.write("\r".join(lines) + "\n")


class LambdaLoggerHandler(logging.Handler):
    def emit(self, record):
        # One record = one log event (as with AWS's framed log sink): inner
        # newlines (e.g. logging.exception tracebacks) become \r, and the line
        # always ends with \n so the next write cannot run into it.
        msg = self.format(record)
        if msg.endswith("\n"):
            msg = msg[:-1]
        sys.stdout.write(msg.replace("\n", "\r") + "\n")


class LambdaLoggerFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _request_id or ""
        record.tenant_id = _tenant_id
        return True


_RESERVED = {"name", "msg", "args", "levelname", "levelno", "pathname", "filename",
             "module", "exc_info", "exc_text", "stack_info", "lineno", "funcName",
             "created", "msecs", "relativeCreated", "thread", "threadName",
             "processName", "process", "aws_request_id", "tenant_id", "_frame_type"}


class JsonFormatter(logging.Formatter):
    def format(self, record):
        record.levelno = min(50, max(0, record.levelno)) // 10 * 10
        record.levelname = logging.getLevelName(record.levelno)
        ts = time.strftime(_DATETIME_FORMAT, time.gmtime(record.created))
        ei = record.exc_info
        result = {
            "timestamp": "%s.%03dZ" % (ts, int(record.msecs)),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(ei[2]) if ei else None,
            "errorType": ei[0].__name__ if ei else None,
            "errorMessage": str(ei[1]) if ei else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": "%s:%s:%s" % (record.pathname, record.funcName, record.lineno) if ei else None,
        }
        if getattr(record, "tenant_id", None) is not None:
            result["tenantId"] = record.tenant_id
        result.update((k, v) for k, v in record.__dict__.items()
                      if k not in _RESERVED and k not in result)
        result = {k: v for k, v in result.items() if v is not None}
        return json.dumps(result, ensure_ascii=False) + "\n"


def setup_logging():
    logging.Formatter.converter = time.gmtime
    handler = LambdaLoggerHandler()
    if _LOG_FORMAT == "JSON":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            _DATETIME_FORMAT))
    root = logging.getLogger()
    if _LOG_LEVEL in logging._nameToLevel:
        root.setLevel(_LOG_LEVEL)  # otherwise Python's default (WARNING), as on AWS
    handler.addFilter(LambdaLoggerFilter())
    root.addHandler(handler)


# ---------------------------------------------------------------- handler loading

def get_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultException("Runtime.MalformedHandlerName", "Bad handler '{}': {}".format(handler, e))
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException("Runtime.BuiltInModuleConflict",
                                 "Cannot use built-in module {} as a handler module".format(modname))
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise FaultException("Runtime.ImportModuleError",
                             "Unable to import module '{}': {}".format(modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException("Runtime.UserCodeSyntaxError",
                             "Syntax error in module '{}': {}".format(modname, e), trace)
    try:
        return getattr(module, fname)
    except AttributeError:
        raise FaultException("Runtime.HandlerNotFound",
                             "Handler '{}' missing on module '{}'".format(fname, modname))


_UNHANDLED_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code. "
    "However, in rare cases, a Lambda runtime update can cause unexpected function behavior. "
    "For functions using managed runtimes, runtime updates can be triggered by a function change, "
    "or can be applied automatically. To determine if the runtime has been updated, check the "
    "runtime version in the INIT_START log entry. If this error correlates with a change in the "
    "runtime version, you may be able to mitigate this error by temporarily rolling back to the "
    "previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html")


# ---------------------------------------------------------------- invoke loop

def handle_event(client, request_handler, body, headers):
    invoke_id = headers.get("Lambda-Runtime-Aws-Request-Id")
    error_result = None
    try:
        client_context = headers.get("Lambda-Runtime-Client-Context")
        identity = headers.get("Lambda-Runtime-Cognito-Identity")
        context = LambdaContext(
            invoke_id,
            _parse_json_header(client_context, "Client Context") if client_context else None,
            _parse_json_header(identity, "Cognito Identity") if identity else None,
            int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            headers.get("Lambda-Runtime-Aws-Tenant-Id"),
        )
        event = unmarshal_request(body, headers.get("Content-Type"))
        response = request_handler(event, context)
        result, content_type = marshal_response(response)
    except FaultException as e:
        error_result = make_error(e.msg, e.exception_type, e.trace, invoke_id)
    except Exception:
        error_result = build_fault_result(sys.exc_info(), invoke_id)

    if error_result is not None:
        log_error(error_result)
        client.post_error(invoke_id, error_result)
    else:
        client.post_result(invoke_id, result, content_type)


def main():
    global _request_id, _tenant_id
    for stream in (sys.stdout, sys.stderr):  # write logs promptly even without -u
        try:
            stream.reconfigure(write_through=True)
        except (AttributeError, ValueError):
            pass
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] and os.path.abspath(sys.path[0]) == here:
        del sys.path[0]  # keep the runtime's own directory off the import path
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    layer_site = "/opt/python/lib/python%d.%d/site-packages" % sys.version_info[:2]
    extra = [p for p in (layer_site, "/opt/python") if os.path.isdir(p) and p not in sys.path]
    sys.path[0:0] = [task_root] + extra

    client = RuntimeClient(_API)
    handler_name = os.environ.get("_HANDLER") or (sys.argv[1] if len(sys.argv) > 1 else "")
    try:
        setup_logging()
        request_handler = get_handler(handler_name)
    except Exception as e:
        if isinstance(e, FaultException):
            error_result = make_error(e.msg, e.exception_type, e.trace)
        else:
            error_result = build_fault_result(sys.exc_info())
        logging.warning(_UNHANDLED_WARNING)
        log_error(error_result)
        client.post_init_error(error_result)
        sys.exit(1)

    while True:
        body, headers = client.next()
        _request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        _tenant_id = headers.get("Lambda-Runtime-Aws-Tenant-Id")
        trace_id = headers.get("Lambda-Runtime-Trace-Id")
        if trace_id is not None:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        handle_event(client, request_handler, body, headers)


if __name__ == "__main__":
    main()
