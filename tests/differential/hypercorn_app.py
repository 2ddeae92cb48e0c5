"""A plain ASGI app served by hypercorn (HTTP/1.1, h2c by upgrade or prior
knowledge, WebSockets), routing on the decoded path as ASGI frameworks do
and picking the admin site by host name. A WebSocket is accepted on any
path and sends one text message with what was served, then closes.
Usage: hypercorn --bind 127.0.0.1:PORT hypercorn_app:app"""

STEER = [b"x-original-url", b"x-rewrite-url", b"x-http-method-override", b"x-http-method",
         b"x-method-override", b"x-forwarded-prefix", b"x-forwarded-path", b"x-forwarded-uri"]


def clean(v):
    return str(v).replace("\r", " ").replace("\n", " ")


def under(path, prefix):
    return path == prefix or path.startswith(prefix + "/")


def describe(scope):
    headers = [(k.lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    get = dict(headers)
    host = get.get(b"host", "").split(":")[0].lower()
    path = scope.get("path", "")
    method = scope.get("method", "GET")
    if host == "admin.example.test" or under(path, "/admin"):
        area = "admin"
    elif under(path, "/account"):
        area = "account"
    elif under(path, "/api"):
        area = "admin" if method in ("PUT", "PATCH", "DELETE") else "public"
    elif under(path, "/public"):
        area = "public"
    else:
        area = "other"
    lines = ["agw-diff", "server=hypercorn", f"area={area}", f"path={clean(path)}", f"method={method}",
             f"host={clean(host)}", f"proto={scope.get('type')}/{scope.get('http_version', '')}",
             f"rid={clean(get.get(b'x-diff-id', ''))}"]
    for k, v in headers:
        if k.startswith(b"x-authgear-"):
            lines.append(f"id.{k.decode('latin-1')}={clean(v)}")
    for k in STEER:
        if k in get:
            lines.append(f"steer.{k.decode()}={clean(get[k])}")
    return ("\n".join(lines) + "\n").encode()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = describe(scope)
    if scope["type"] == "websocket":
        msg = await receive()
        if msg["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": body.decode()})
            await send({"type": "websocket.close", "code": 1000})
        return
    while True:
        msg = await receive()
        if msg["type"] != "http.request" or not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
