#!/usr/bin/env python3
"""Test-only OpenStack Barbican server (barbican from PyPI) for the DMS test suite.

Runs Barbican's own API application (pecan app + the shipped ``unauthenticated-context``
paste filter) with sqlite and the simple_crypto secret store, all state under --dir, on
127.0.0.1:--port, with Python's threaded wsgiref server. Never use it outside tests.

A thin WSGI wrapper in front of Barbican stands in for keystonemiddleware and fixes the
quirks of barbican 23.0.0 (docs/design.md §5):

* ``X-Auth-Token`` -> ``X-Project-Id``: every token maps to its own project
  ("proj-" + the first 16 hex digits of sha256(token)); a secret stored with token A and
  read with token B is therefore a real 403 from Barbican's policy.
* Missing token, or a token starting with ``invalid``: 401 from the wrapper, as keystone
  would answer for an unknown/expired token.
* The webob ad-hoc attribute ``request_id`` is put into the environ (without it 23.0.0
  answers 500 on every /v1 call).

Fault injection (read on every request, so a test can flip it at any time): the file
``<dir>/fault.json``, if present, holds ``{"status": 500, "delay_secs": 0.0,
"path_contains": "/payload", "body": "..."}`` (all keys optional). A request whose path
contains ``path_contains`` (default: every /v1 request) first sleeps ``delay_secs`` and
then, if ``status`` is set, gets that status with ``body`` instead of reaching Barbican.

Every /v1 request is appended to ``<dir>/requests.log`` as one line
``METHOD PATH accept=<Accept> token=<yes|no>`` (never the token itself).
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import socketserver
import sys
import threading
import time
import uuid
from wsgiref import simple_server

PASTE_INI = """\
[composite:main]
use = egg:Paste#urlmap
/: barbican_version
/v1: barbican_api

[pipeline:barbican_version]
pipeline = request_id http_proxy_to_wsgi microversion versionapp

[pipeline:barbican_api]
pipeline = request_id http_proxy_to_wsgi unauthenticated-context microversion apiapp

[app:apiapp]
paste.app_factory = barbican.api.app:create_main_app

[app:versionapp]
paste.app_factory = barbican.api.app:create_version_app

[filter:unauthenticated-context]
paste.filter_factory = barbican.api.middleware.context:UnauthenticatedContextMiddleware.factory

[filter:microversion]
paste.filter_factory = barbican.api.middleware.microversion:MicroversionMiddleware.factory

[filter:request_id]
paste.filter_factory = oslo_middleware.request_id:RequestId.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory
"""

BARBICAN_CONF = """\
[DEFAULT]
host_href = http://127.0.0.1:{port}
sql_connection = sqlite:///{dir}/barbican.sqlite
db_auto_create = True
debug = False
log_file = {dir}/barbican-service.log

[database]
connection = sqlite:///{dir}/barbican.sqlite

[secretstore]
enabled_secretstore_plugins = store_crypto

[crypto]
enabled_crypto_plugins = simple_crypto

[simple_crypto_plugin]
kek = {kek}

[queue]
enable = False

[oslo_policy]
enforce_scope = False
enforce_new_defaults = False
"""


def project_for(token):
    return "proj-" + hashlib.sha256(token.encode()).hexdigest()[:16]


class TestAuthWrapper:
    """Keystone stand-in, request_id fix, fault injection and request log."""

    def __init__(self, app, state_dir):
        self.app = app
        self.fault_path = os.path.join(state_dir, "fault.json")
        self.log_path = os.path.join(state_dir, "requests.log")
        self.log_lock = threading.Lock()
        # Barbican keeps its state in one sqlite file here (MySQL or PostgreSQL in a real
        # deployment), which takes one writer at a time: two transactions that both began
        # by reading and then write get "database is locked" at once, and Barbican answers
        # 500. So the requests that write run one at a time: every method but GET/HEAD,
        # and a project's first request (Barbican creates the project row then). Reads
        # stay concurrent (the daemon's fetches for many targets at once).
        self.write_lock = threading.Lock()
        self.known_projects = set()

    def _fault(self, path):
        try:
            with open(self.fault_path, encoding="utf-8") as f:
                fault = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        if fault.get("path_contains", "") not in path:
            return None
        return fault

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        token = environ.get("HTTP_X_AUTH_TOKEN", "")
        if not path.startswith("/v1"):
            return self.app(environ, start_response)

        with self.log_lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write("%s %s accept=%s token=%s\n" % (
                environ.get("REQUEST_METHOD"), path,
                environ.get("HTTP_ACCEPT", ""), "yes" if token else "no"))

        fault = self._fault(path)
        if fault is not None:
            delay = float(fault.get("delay_secs", 0) or 0)
            if delay > 0:
                time.sleep(delay)
            status = fault.get("status")
            if status:
                body = fault.get("body", "injected fault").encode()
                start_response("%d Injected" % int(status), [
                    ("Content-Type", "text/plain"),
                    ("Content-Length", str(len(body)))])
                return [body]

        if not token or token.startswith("invalid"):
            body = json.dumps({"error": {"code": 401, "title": "Unauthorized",
                                         "message": "The request you have made "
                                         "requires authentication."}}).encode()
            start_response("401 Unauthorized", [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("WWW-Authenticate", "Keystone uri='http://127.0.0.1/identity'")])
            return [body]

        project = project_for(token)
        environ["HTTP_X_PROJECT_ID"] = project
        environ.setdefault("HTTP_X_USER_ID", "user-" + project[5:])
        environ.setdefault("HTTP_X_ROLES", "admin,creator")
        environ.setdefault("webob.adhoc_attrs", {})["request_id"] = \
            "req-" + str(uuid.uuid4())
        reads = environ.get("REQUEST_METHOD") in ("GET", "HEAD")
        if reads and project in self.known_projects:
            return self.app(environ, start_response)
        with self.write_lock:
            result = self.app(environ, start_response)
            try:
                body = list(result)  # the whole response, while the lock is held
            finally:
                if hasattr(result, "close"):
                    result.close()
            self.known_projects.add(project)
        return body


class ThreadingWSGIServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    # The default backlog of 5 drops connections when the daemon fetches for many
    # targets at once (measured: 14 of 16 concurrent fetches); clients then wait 1 s.
    request_queue_size = 128
    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))

    def address_string(self):
        return self.client_address[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="state directory (created)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    state_dir = os.path.abspath(args.dir)
    conf_dir = os.path.join(state_dir, ".barbican")
    os.makedirs(conf_dir, exist_ok=True)
    kek = base64.b64encode(secrets.token_bytes(32)).decode()
    with open(os.path.join(conf_dir, "barbican.conf"), "w", encoding="utf-8") as f:
        f.write(BARBICAN_CONF.format(port=args.port, dir=state_dir, kek=kek))
    os.chmod(os.path.join(conf_dir, "barbican.conf"), 0o600)
    paste_ini = os.path.join(state_dir, "barbican-api-paste.ini")
    with open(paste_ini, "w", encoding="utf-8") as f:
        f.write(PASTE_INI)

    # oslo.config looks for ~/.barbican/barbican.conf first: point HOME at the state
    # directory before barbican is imported (its modules parse config at import time),
    # so /etc/barbican is never read.
    os.environ["HOME"] = state_dir
    os.chdir(state_dir)

    from paste import deploy  # noqa: E402 - must follow the HOME switch

    app = deploy.loadapp("config:%s" % paste_ini)
    app = TestAuthWrapper(app, state_dir)

    server = simple_server.make_server(
        "127.0.0.1", args.port, app,
        server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    print("barbican test server listening on http://127.0.0.1:%d" % args.port,
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
