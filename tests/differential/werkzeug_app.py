"""A werkzeug WSGI app as Flask-era apps sit behind a proxy: ProxyFix
trusting one hop for X-Forwarded-For/-Proto/-Host/-Port/-Prefix, a
method-override middleware as Rack::MethodOverride and Symfony do
(X-HTTP-Method-Override or `_method` on a POST), and a werkzeug routing
Map. The admin site is picked by host name. Served by werkzeug's own
server. Usage: python werkzeug_app.py PORT"""

import sys
from urllib.parse import parse_qs

from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import Map, Rule
from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response

URLS = Map([
    Rule("/admin", endpoint="admin"),
    Rule("/admin/<path:rest>", endpoint="admin"),
    Rule("/account", endpoint="account"),
    Rule("/account/<path:rest>", endpoint="account"),
    Rule("/api/<path:rest>", endpoint="admin", methods=["PUT", "PATCH", "DELETE"]),
    Rule("/api/<path:rest>", endpoint="public"),
    Rule("/public", endpoint="public"),
    Rule("/public/<path:rest>", endpoint="public"),
    Rule("/<path:rest>", endpoint="other"),
    Rule("/", endpoint="other"),
])

STEER = ["X_ORIGINAL_URL", "X_REWRITE_URL", "X_HTTP_METHOD_OVERRIDE", "X_HTTP_METHOD",
         "X_METHOD_OVERRIDE", "X_FORWARDED_PREFIX", "X_FORWARDED_PATH", "X_FORWARDED_URI"]
ALLOWED = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class MethodOverride:
    """POST plus X-HTTP-Method-Override or a `_method` field runs as that method."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD", "").upper() == "POST":
            method = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE")
            if not method:
                method = (parse_qs(environ.get("QUERY_STRING", "")).get("_method") or [None])[0]
            if not method and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
                request = Request(environ)
                method = request.form.get("_method")
            if method and method.upper() in ALLOWED:
                environ["REQUEST_METHOD"] = method.upper()
        return self.app(environ, start_response)


def clean(v):
    return str(v).replace("\r", " ").replace("\n", " ")


@Request.application
def app(request):
    host = request.host.split(":")[0].lower()
    adapter = URLS.bind_to_environ(request.environ)
    try:
        endpoint, _ = adapter.match()
    except Exception:  # werkzeug answers 404/405 itself; report it as "other"
        endpoint = "other"
    area = "admin" if host == "admin.example.test" else endpoint
    env = request.environ
    lines = ["agw-diff", "server=werkzeug", f"area={area}", f"path={clean(request.path)}",
             f"method={env.get('REQUEST_METHOD', '')}", f"host={clean(host)}",
             f"prefix={clean(request.script_root)}", f"rid={clean(env.get('HTTP_X_DIFF_ID', ''))}"]
    for k, v in sorted(env.items()):
        if k.startswith("HTTP_X_AUTHGEAR_"):
            lines.append(f"id.{k}={clean(v)}")
    for k in STEER:
        if "HTTP_" + k in env:
            lines.append(f"steer.{k}={clean(env['HTTP_' + k])}")
    return Response("\n".join(lines) + "\n", content_type="text/plain")


wsgi = ProxyFix(MethodOverride(app), x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)

if __name__ == "__main__":
    run_simple("127.0.0.1", int(sys.argv[1]), wsgi, threaded=True)
