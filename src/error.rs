//! The one error type of the request path and the one table that turns it
//! into an HTTP response. Every refusal the gateway makes goes through
//! [`GatewayError::into_response`]; the reasons behind it (a bad token, a
//! bad path, a missing role) are defined here too, so every stage can name
//! them without knowing the others.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::BodyExt;

/// The body type of every response the gateway produces.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

/// A request the gateway refuses to judge because servers would read it in
/// different ways (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// `post` or `Get`: a standard method in another case.
    MethodCase,
    MissingHost,
    DuplicateHost,
    /// Not a plain `host[:port]`.
    InvalidHost,
    /// HTTP/2 `:authority` and `Host` name different hosts.
    AuthorityConflict,
    /// Method-override headers that disagree or name no method, or an
    /// override the route's rules do not allow.
    MethodOverride,
}

impl BadRequest {
    /// Stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            BadRequest::MethodCase => "method_case",
            BadRequest::MissingHost => "missing_host",
            BadRequest::DuplicateHost => "duplicate_host",
            BadRequest::InvalidHost => "invalid_host",
            BadRequest::AuthorityConflict => "authority_conflict",
            BadRequest::MethodOverride => "bad_method_override",
        }
    }

    /// Short, client-safe description for the JSON body.
    pub fn describe(self) -> &'static str {
        match self {
            BadRequest::MethodCase => "the method must be written in upper case",
            BadRequest::MissingHost => "the request has no Host header",
            BadRequest::DuplicateHost => "more than one Host header",
            BadRequest::InvalidHost => "the Host header is not a plain host[:port]",
            BadRequest::AuthorityConflict => ":authority and Host name different hosts",
            BadRequest::MethodOverride => "the method override is ambiguous or not allowed here",
        }
    }
}

/// Everything that can stop a request inside the gateway.
#[derive(Debug)]
pub enum GatewayError {
    BadPath(PathError),
    BadRequest(BadRequest),
    /// The request is for a host outside `server.allowed_hosts` (421).
    MisdirectedHost,
    /// HTTP/1.1 that hyper could not parse: a bad request line, method,
    /// target, version or header line (`refusal.rs` maps hyper's own 400).
    MalformedRequest,
    UriTooLong,
    HeadersTooLarge,
    PayloadTooLarge,
    /// The client's body broke its own framing (a chunk size like `zz`
    /// or one past u64, a chunk without its CRLF): 400, the client's fault.
    MalformedBody,
    /// The client's body ended before it was complete (the connection
    /// closed or was half-closed before `Content-Length` or the last chunk).
    IncompleteBody,
    /// The upstream's `timeout` ran out while the gateway was still
    /// waiting for the client's body: 408, not the upstream's 504.
    BodyTimeout,
    NoRoute,
    MissingToken,
    InvalidToken(TokenError),
    MultipleAuthorization,
    /// Session mode: neither a session cookie nor a bearer token.
    MissingSession,
    /// Session mode: the resolver said the session is not valid.
    InvalidSession,
    /// An unauthenticated browser on a `login_redirect` route: 302 to this
    /// (already validated) login URL.
    LoginRedirect(String),
    /// An unauthenticated browser on a `method = "login"` route: 302 to
    /// the authorization endpoint (`.0`), setting the flow's state cookie
    /// (`.1`, complete `Set-Cookie` values).
    LoginStart(Box<(String, Vec<String>)>),
    Forbidden(Denial),
    KeysUnavailable,
    /// Authgear's resolver refused, timed out or failed: 503, never a pass
    /// and never a 401.
    ResolverUnavailable,
    /// The login's session store (Redis) could not be asked: 503 with
    /// `Retry-After`, never a pass and never a logout.
    SessionStoreUnavailable,
    UpstreamUnavailable(String),
    UpstreamTimeout,
    Internal(String),
}

impl GatewayError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadPath(_)
            | GatewayError::BadRequest(_)
            | GatewayError::MultipleAuthorization
            | GatewayError::MalformedRequest
            | GatewayError::MalformedBody
            | GatewayError::IncompleteBody => StatusCode::BAD_REQUEST,
            GatewayError::MisdirectedHost => StatusCode::MISDIRECTED_REQUEST,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UriTooLong => StatusCode::URI_TOO_LONG,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MissingToken | GatewayError::InvalidToken(_) | GatewayError::MissingSession | GatewayError::InvalidSession => {
                StatusCode::UNAUTHORIZED
            }
            GatewayError::LoginRedirect(_) | GatewayError::LoginStart(_) => StatusCode::FOUND,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::KeysUnavailable | GatewayError::ResolverUnavailable | GatewayError::SessionStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// True for the refusals that mean "not logged in" (401), which a
    /// `login_redirect` route turns into a redirect for browsers.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, GatewayError::MissingToken | GatewayError::InvalidToken(_) | GatewayError::MissingSession | GatewayError::InvalidSession)
    }

    /// Stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::BadPath(_) => "bad_path",
            GatewayError::BadRequest(b) => b.reason(),
            GatewayError::MisdirectedHost => "misdirected_host",
            GatewayError::MalformedRequest => "malformed_request",
            GatewayError::UriTooLong => "uri_too_long",
            GatewayError::HeadersTooLarge => "headers_too_large",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::MalformedBody => "malformed_body",
            GatewayError::IncompleteBody => "incomplete_body",
            GatewayError::BodyTimeout => "body_timeout",
            GatewayError::NoRoute => "no_route",
            GatewayError::MissingToken => "missing_token",
            GatewayError::InvalidToken(e) => e.reason(),
            GatewayError::MultipleAuthorization => "multiple_authorization",
            GatewayError::MissingSession => "missing_session",
            GatewayError::InvalidSession => "invalid_session",
            GatewayError::LoginRedirect(_) => "login_redirect",
            GatewayError::LoginStart(_) => "login_start",
            GatewayError::Forbidden(d) => d.reason(),
            GatewayError::KeysUnavailable => "keys_unavailable",
            GatewayError::ResolverUnavailable => "resolver_unavailable",
            GatewayError::SessionStoreUnavailable => "session_store_unavailable",
            GatewayError::UpstreamUnavailable(_) => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::Internal(_) => "internal",
        }
    }

    /// (`error`, `error_description`) of the JSON body.
    fn body_fields(&self) -> (&'static str, String) {
        match self {
            GatewayError::BadPath(p) => ("invalid_request", p.describe().to_owned()),
            GatewayError::BadRequest(b) => ("invalid_request", b.describe().to_owned()),
            GatewayError::MisdirectedHost => ("misdirected_request", "this gateway does not serve that host".into()),
            GatewayError::MalformedRequest => ("invalid_request", "the request line or a header is not valid HTTP/1.1".into()),
            GatewayError::UriTooLong => ("invalid_request", "request URI is too long".into()),
            GatewayError::HeadersTooLarge => ("invalid_request", "too many or too large request headers".into()),
            GatewayError::PayloadTooLarge => ("invalid_request", "request body is larger than this route allows".into()),
            GatewayError::MalformedBody => ("invalid_request", "the request body's chunked encoding is malformed".into()),
            GatewayError::IncompleteBody => ("invalid_request", "the request body ended before it was complete".into()),
            GatewayError::BodyTimeout => ("request_timeout", "the request body did not arrive in time".into()),
            GatewayError::NoRoute => ("not_found", "no route matches this request".into()),
            GatewayError::MissingToken => ("unauthorized", "a bearer token is required".into()),
            GatewayError::InvalidToken(e) => ("invalid_token", e.describe()),
            GatewayError::MultipleAuthorization => ("invalid_request", "more than one Authorization header".into()),
            GatewayError::MissingSession => ("unauthorized", "a session cookie or bearer token is required".into()),
            GatewayError::InvalidSession => ("invalid_token", "the session is not valid (expired, revoked or unknown)".into()),
            GatewayError::LoginRedirect(_) | GatewayError::LoginStart(_) => ("login_required", "log in to continue".into()),
            GatewayError::Forbidden(d) => ("insufficient_scope", d.describe()),
            GatewayError::KeysUnavailable => ("temporarily_unavailable", "signing keys are not available yet; retry shortly".into()),
            GatewayError::ResolverUnavailable => ("temporarily_unavailable", "the session could not be checked; retry shortly".into()),
            GatewayError::SessionStoreUnavailable => ("temporarily_unavailable", "the session store is not reachable; retry shortly".into()),
            GatewayError::UpstreamUnavailable(_) => ("bad_gateway", "the upstream could not be reached".into()),
            GatewayError::UpstreamTimeout => ("gateway_timeout", "the upstream did not answer in time".into()),
            GatewayError::Internal(_) => ("internal_error", "internal error".into()),
        }
    }

    /// The `error_description` of the response, for answers that carry it
    /// elsewhere (`grpc-message`).
    pub fn description(&self) -> String {
        self.body_fields().1
    }

    /// The response the client gets. `realm` goes into `WWW-Authenticate`.
    pub fn into_response(self, realm: &str) -> Response<Body> {
        let (head, body) = self.into_head(realm);
        head.map(|()| full(body))
    }

    /// The same response as [`into_response`](Self::into_response), as a
    /// head and the JSON bytes: for writing it where there is no hyper
    /// connection to do it (`refusal.rs`).
    pub fn into_head(self, realm: &str) -> (Response<()>, Bytes) {
        let status = self.status();
        let (code, description) = self.body_fields();
        let body = serde_json::json!({ "error": code, "error_description": description }).to_string();
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let challenge = match &self {
            GatewayError::MissingToken | GatewayError::MissingSession => Some(format!("Bearer realm=\"{realm}\"")),
            GatewayError::InvalidToken(_) | GatewayError::InvalidSession => {
                Some(format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"", quote_safe(&description)))
            }
            GatewayError::MultipleAuthorization => {
                Some(format!("Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"", quote_safe(&description)))
            }
            GatewayError::Forbidden(_) => {
                Some(format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"", quote_safe(&description)))
            }
            _ => None,
        };
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(WWW_AUTHENTICATE, c);
        }
        match &self {
            GatewayError::KeysUnavailable | GatewayError::ResolverUnavailable | GatewayError::SessionStoreUnavailable => {
                h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            GatewayError::LoginRedirect(location) => match HeaderValue::from_str(location) {
                Ok(v) => {
                    h.insert(LOCATION, v);
                }
                // Built from validated parts, so this cannot happen; if it
                // did, a 302 without Location would strand the user.
                Err(_) => *resp.status_mut() = StatusCode::UNAUTHORIZED,
            },
            GatewayError::LoginStart(start) => {
                for c in start.1.iter().filter_map(|c| HeaderValue::from_str(c).ok()) {
                    h.append(http::header::SET_COOKIE, c);
                }
                match HeaderValue::from_str(&start.0) {
                    Ok(v) => {
                        h.insert(LOCATION, v);
                    }
                    Err(_) => *resp.status_mut() = StatusCode::UNAUTHORIZED,
                }
            }
            _ => {}
        }
        (resp, Bytes::from(body))
    }
}

/// RFC 6750 error_description allows a limited character set; keep to it.
fn quote_safe(s: &str) -> String {
    s.chars().map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c }).collect()
}

/// A complete body from bytes.
pub fn full(data: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(data.into()).map_err(|never| match never {}).boxed()
}

/// Joins an error and its sources into one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Why a token was refused (401 `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed(&'static str),
    UnsupportedAlg(String),
    UnsupportedCrit,
    TypeNotAccepted(String),
    UnknownIssuer,
    UnknownKid,
    AlgMismatch,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongAudience,
    MissingClaim(&'static str),
}

impl TokenError {
    /// Stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::UnsupportedAlg(_) => "unsupported_alg",
            TokenError::UnsupportedCrit => "unsupported_crit",
            TokenError::TypeNotAccepted(_) => "wrong_type",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::AlgMismatch => "alg_mismatch",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::MissingClaim(_) => "missing_claim",
        }
    }

    /// The RFC 6750 `error_description` (never echoes token content).
    pub fn describe(&self) -> String {
        match self {
            TokenError::Malformed(why) => format!("malformed token: {why}"),
            TokenError::UnsupportedAlg(a) => format!("signing algorithm {a} is not accepted"),
            TokenError::UnsupportedCrit => "token has critical header parameters".into(),
            TokenError::TypeNotAccepted(t) => format!("token type {t} is not accepted"),
            TokenError::UnknownIssuer => "token issuer is not trusted".into(),
            TokenError::UnknownKid => "token signing key is unknown".into(),
            TokenError::AlgMismatch => "token algorithm does not match its key".into(),
            TokenError::BadSignature => "token signature is invalid".into(),
            TokenError::Expired => "token has expired".into(),
            TokenError::NotYetValid => "token is not yet valid".into(),
            TokenError::IssuedInFuture => "token is issued in the future".into(),
            TokenError::WrongAudience => "token audience is not accepted".into(),
            TokenError::MissingClaim(c) => format!("token lacks the `{c}` claim"),
        }
    }
}

/// Why an authenticated user was refused (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    MissingRole,
    MissingScope(String),
    ClaimMismatch(String),
}

impl Denial {
    /// Client-facing description (names only what the route asked for).
    pub fn describe(&self) -> String {
        match self {
            Denial::MissingRole => "the user lacks a required role".into(),
            Denial::MissingScope(s) => format!("the token lacks the scope `{s}`"),
            Denial::ClaimMismatch(c) => format!("the claim `{c}` does not have the required value"),
        }
    }

    /// Short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::MissingRole => "missing_role",
            Denial::MissingScope(_) => "missing_scope",
            Denial::ClaimMismatch(_) => "claim_mismatch",
        }
    }
}

/// Why a path was refused; each maps to 400 Bad Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (and is not `*`).
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `%25` followed by two hex digits (`%252e`, `%252f`): a server or
    /// filter that decodes twice would see a different path than the one
    /// judged.
    DoubleEncoding,
    /// An overlong UTF-8 encoding (`%C0%AE` for `.`, `%C0%AF` for `/`):
    /// invalid UTF-8 that some decoders still read as the ASCII character.
    OverlongUtf8,
    /// `%2F` or `%5C`: an encoded separator means different things to
    /// different servers, so it is never let through.
    EncodedSeparator,
    /// A raw backslash, which some servers treat as `/`.
    Backslash,
    /// NUL or another control character, raw or encoded.
    ControlCharacter,
    /// `..` that would climb above the root.
    AboveRoot,
    /// A `;` where servlet containers would strip a parameter and so change
    /// which resource is meant: in any segment but the last, or after an
    /// empty or dot name (`/public/..;/admin` reaches `/admin` there).
    Semicolon,
    /// `%3B`: servers disagree on whether it starts a parameter.
    EncodedSemicolon,
    /// A last-segment `;` parameter with a byte outside the plain set.
    BadParameter,
    /// A character that some servers fold to an ASCII letter when they
    /// compare paths case-insensitively (`ı`, `ſ`, the Kelvin sign, ...):
    /// refused while a route matches case-insensitively.
    CaseFoldLookalike,
}

impl PathError {
    /// Short, client-safe description used in the JSON error body.
    pub fn describe(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path must start with /",
            PathError::BadPercentEncoding => "malformed percent-encoding in path",
            PathError::DoubleEncoding => "double percent-encoding in path",
            PathError::OverlongUtf8 => "overlong UTF-8 encoding in path",
            PathError::EncodedSeparator => "encoded slash or backslash in path",
            PathError::Backslash => "backslash in path",
            PathError::ControlCharacter => "control character in path",
            PathError::AboveRoot => "path climbs above the root",
            PathError::Semicolon => "path parameters (;) are accepted only after a name in the last segment",
            PathError::EncodedSemicolon => "encoded semicolon (%3B) in path",
            PathError::BadParameter => "path parameter holds a character other than letters, digits and -._~=,;!:+",
            PathError::CaseFoldLookalike => "path holds a character that case-insensitive servers read as an ASCII letter",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}
