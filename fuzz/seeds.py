#!/usr/bin/env python3
"""Writes the hand-made seed files (seed-*) of every target except
auth_token, whose signed tokens come from `seedgen.rs`. Run from fuzz/."""
import json
import os

ROOT = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(rel):
    with open(os.path.join(ROOT, "..", rel), "rb") as f:
        return f.read()


paths = [
    "/", "/public/x", "/public/../admin", "/public/%2e%2e/admin", "/public/%2E./admin", "//admin//x",
    "/%61dmin", "/a%3f", "/a%7e", "/public/..;/admin", "/admin%3bx", "/public%2f..%2fadmin", "/a%5cb",
    "/a\\b", "/a%00", "/a%zz", "/a%2", "/..", "/a/../..", "/a/b/..", "/a/.", "/api/v1/items/?page=2",
    "/api", "/api/", "/api/../admin", "http://app.example.com/admin?x=1", "https://a:8443//public/./x",
    "*", "/caf%C3%A9", "/public/%252e%252e/admin/x", "/public/%252fadmin", "/public/x;jsessionid=1",
    "/public/x;.css", "/ADMIN", "/public/./x/..", "/a/b/c/../../..", "/x?y=%2F&z=..", "/%7euser/",
    "/a b", "/public/%C0%AE%C0%AE/admin", "/" + "a/" * 30, "relative/path",
]
for i, p in enumerate(paths):
    put("path_normalize", "%02d" % i, p)

claims_obj = {
    "iss": "https://fuzz.authgear.test", "sub": "user-1", "aud": ["x"], "exp": 1750003600,
    "https://authgear.com/claims/user/roles": ["admin", "ops"],
    "https://authgear.com/claims/user/is_anonymous": False,
    "https://authgear.com/claims/user/is_verified": True,
    "https://authgear.com/claims/user/can_reauthenticate": True,
    "amr": ["pwd", "otp"], "auth_time": 1749999990, "email": "user@example.com",
    "roles": ["a,b", "c"], "custom": {"plan": "pro", "n": [1, 2.5]},
}
for i, v in enumerate([
    "user-1", True, 1700000000, 1.5e300, -0.0, ["a", "b,c"], {"k": 1}, "evil\r\nx-authgear-user-id: admin",
    "caf\u00e9 100%", None, [], [None, [1, 2], {}, True], claims_obj, "\u0000\u007f\u00ff\U0001F600",
    "%41%", 12345678901234567890, [""],
]):
    put("claim_render", "%02d" % i, json.dumps(v, ensure_ascii=False))
put("claim_render", "raw-text", "not json at all\t\x01")

put("config_load", "gateway-toml", read("gateway.toml"))
put("config_load", "golden-bad", read("tests/golden/bad.toml"))
put("config_load", "minimal", '[upstream]\nurl = "http://127.0.0.1:3000"\n[auth]\nissuer = "https://iss.example"\n[[routes]]\npath = "/**"\n')
put("config_load", "upstreams-and-prefixes", """[server]
listen = "127.0.0.1:0"
max_uri_length = 4096
request_header_timeout = "1m30s"
[upstream]
url = "https://${FUZZ_HOST}/base"
timeout = "500ms"
[upstreams.billing]
url = "http://127.0.0.1:3001"
protocol = "h2c"
[auth]
issuer = "https://iss.example"
audiences = ["a", "b"]
leeway = "30s"
[[auth.issuers]]
issuer = "https://second.example"
jwks_uri = "https://second.example/jwks"
[headers]
"x-user-id" = "sub"
"x-ok" = "@authenticated"
[[routes]]
path = "/api/*/items/**"
strip_prefix = "/api"
add_prefix = "/internal"
upstream = "billing"
methods = ["GET", "POST"]
max_body_size = "10MB"
[[routes]]
path = "/public/**"
auth = "public"
[[routes]]
path = "/**"
roles = ["admin"]
scopes = ["orders:read"]
claims = { "https://authgear.com/claims/user/is_verified" = true }
""")
put("config_load", "session-mode", """[upstream]
url = "http://127.0.0.1:3000"
[auth]
issuer = "https://iss.example"
method = "jwt_or_session"
session_cookies = ["session", "bad name"]
resolver_url = "http://127.0.0.1:1/_resolver/resolve"
login_url = "/login"
[[routes]]
path = "/**"
login_redirect = true
auth = "optional"
""")
put("config_load", "env-errors", '[upstream]\nurl = "${NOPE}"\n[auth]\nissuer = "${FUZZ_EMPTY:-https://x}"\nrealm = "${bad name}"\n')
put("config_load", "syntax-error", '[server\nlisten = "x"\n')
put("config_load", "duplicate-key", '[server]\nlisten = "a"\nlisten = "b"\n')
put("config_load", "types", '[server]\nlisten = 5\nworkers = -1\nmax_connections = 0\n[upstream]\nurl = ["x"]\n[[routes]]\npath = 1\n')
put("config_load", "empty", "")

put("session_cookies", "mixed", "theme=dark; session=abc; tracking=1")
put("session_cookies", "two-headers", "sessionx=no; other_session=nope\nag_refresh=r1; session=s1")
put("session_cookies", "empty-value", "session=; theme=x")
put("session_cookies", "padded", "  session = a=b ; ag_refresh=\"q\";;")
put("session_cookies", "case", "Session=abc; SESSION=x")
put("session_cookies", "repeated", "session=a;session=b;session=c")

valid = ("x-authgear-session-valid: true\nx-authgear-user-id: u-1\nx-authgear-user-anonymous: false\n"
         "x-authgear-user-verified: true\nx-authgear-user-can-reauthenticate: true\n"
         "x-authgear-user-roles: admin, ops\nx-authgear-session-amr: pwd otp\n"
         "x-authgear-session-authenticated-at: 1700000000\n")
put("resolver_headers", "valid", valid)
put("resolver_headers", "invalid", "x-authgear-session-valid: false\nx-authgear-user-id: u\n")
put("resolver_headers", "twice", "x-authgear-session-valid: true\nx-authgear-session-valid: true\nx-authgear-user-id: u\n")
put("resolver_headers", "no-user", "X-Authgear-Session-Valid: TRUE\n")
put("resolver_headers", "absent", "content-type: text/plain\n")
put("resolver_headers", "odd-values", "x-authgear-session-valid:  True \nx-authgear-user-id: %41 b\nx-authgear-user-roles: ,,a,,\nx-authgear-session-amr: pwd,,mfa  x\nx-authgear-session-authenticated-at: -1\n")
put("resolver_headers", "large", "x-authgear-session-valid: true\nx-authgear-user-id: u\nx-authgear-user-roles: " + "r," * 4200 + "\n")

csv = read("examples/import/users.csv")
put("import_reader", "csv-users", b"0" + csv)
put("import_reader", "csv-bom-quoted", b"0\xef\xbb\xbfEmail,Name,Roles\n\"a@b.co\",\"Doe, \"\"J\"\"\",\"admin,ops\"\nb@b.co,\"multi\nline\"\nc@b.co\n")
put("import_reader", "csv-bad-utf8", b"0Email,Name\na@b.co,\xff\xfe\nb@b.co,B\n")
migration = [
    {"email": "user1@example.com", "email_verified": True,
     "password": {"type": "bcrypt", "password_hash": "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"}},
    {"email": "user2@example.com", "email_verified": False, "name": "John Doe", "given_name": "John", "family_name": "Doe",
     "password": {"type": "bcrypt", "password_hash": "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"}},
]
put("import_reader", "json-array", "1" + json.dumps(migration, indent=2))
put("import_reader", "json-wrapper", '1{"kind": "x", "meta": {"a": [1]}, "users": [{"email": "a@b.co", "phone_number": "+85298765432"}, 42, "s"]}')
put("import_reader", "json-brackets-in-strings", '1[\n{"name": "a ] } [ {", "q": "x\\"y"},\n {"n": [1, {"m": 2}]} , 42,\n{"last": true}\n]')
put("import_reader", "json-truncated", '1[{"email": "a@b.co"}, {"email": ')
put("import_reader", "ndjson", "2" + "\n".join(json.dumps(r) for r in migration) + "\n\n[1]\nnot json\n")
put("import_reader", "ndjson-bad-utf8", b'2{"email": "a@b.co"}\n\xff\xff\n{"email": "b@b.co", "roles": "a,b", "disabled": "yes"}\n')

put("import_mapping", "doc", """identifier = "email"
lowercase_email = true
list_separator = ","
unmapped = "keep"
default_password_type = "md5"
[columns]
"Email" = "email"
"Password Hash" = "password.password_hash"
"Plan" = "custom_attributes.plan:integer"
"Legacy Id" = "-"
""")
put("import_mapping", "username", 'identifier = "preferred_username"\nlist_separator = ";"\n[columns]\n"Login" = "preferred_username"\n"Verified" = "email_verified"\n"Tags" = "roles"\n"Age" = "custom_attributes.age:integer"\n"Legacy" = "-"\n')
put("import_mapping", "drop-and-types", 'unmapped = "drop"\n[columns]\n"Email" = "email"\n"Roles" = "roles"\n"Groups" = "groups:list"\n"Email Verified" = "email_verified"\n"Age" = "custom_attributes.age:number"\n"Phone" = "phone_number"\n"Name" = "custom_attributes.x:boolean"\n')
put("import_mapping", "bad", '[columns]\n"Login" = "username"\n')
put("import_mapping", "clash", '[columns]\n"Email" = "email"\n"email" = "email"\n"Plan" = "custom_attributes"\n"Name" = "custom_attributes.plan.x"\n')
