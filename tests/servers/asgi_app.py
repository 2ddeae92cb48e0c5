"""A small ASGI app for the upgrade-smuggling tests, served by hypercorn
(which implements the h2c upgrade, as Jetty and Go's h2c handler do).

Every request is remembered; GET /_seen (asked directly, not through the
gateway) returns them as JSON: path, HTTP version, and the identity header
the app saw.
"""
import json

SEEN = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    path = scope["path"]
    if path == "/_seen":
        body = json.dumps(SEEN).encode()
    else:
        SEEN.append({
            "path": path,
            "http_version": scope["http_version"],
            "user": headers.get("x-authgear-user-id"),
            "upgrade": headers.get("upgrade"),
            "http2_settings": headers.get("http2-settings"),
        })
        area = "admin" if path.startswith("/admin") else "public"
        body = json.dumps({"area": area, "path": path, "user": headers.get("x-authgear-user-id")}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
