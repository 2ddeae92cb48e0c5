//! Refusals the gRPC way. A gRPC client reads a call's outcome from
//! `grpc-status` and `grpc-message`, not from the HTTP status: a plain 401
//! reaches it as a transport error with the gateway's reason lost. So for a
//! request sent as `application/grpc*` (gRPC, gRPC-Web) every refusal is
//! answered HTTP 200 "trailers-only": one header block that ends the
//! stream and carries the status and the description.

use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::error::{full, Body, GatewayError};

/// True when the request is a gRPC (or gRPC-Web) call.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().get(..16).is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc")))
}

/// The gRPC status code for a refusal answered with this HTTP status.
///
/// Beyond the obvious (401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 503
/// UNAVAILABLE, 500 INTERNAL): 404 is UNIMPLEMENTED (no route, as gRPC
/// says of an unknown method), 413 and 429 RESOURCE_EXHAUSTED, 408 and 504
/// DEADLINE_EXCEEDED (nothing came in time), 502 UNAVAILABLE (the
/// upstream could not be reached: retrying may help), a login redirect
/// UNAUTHENTICATED (a gRPC client cannot follow it), any other 4xx
/// INVALID_ARGUMENT and any other status INTERNAL.
pub fn status_code(status: StatusCode) -> u8 {
    match status.as_u16() {
        401 | 302 => 16,
        403 => 7,
        404 => 12,
        408 | 504 => 4,
        413 | 429 => 8,
        502 | 503 => 14,
        400..=499 => 3,
        _ => 13,
    }
}

/// What the gRPC spec leaves unescaped in `grpc-message`: printable ASCII
/// except `%`.
const MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// `text` as a `grpc-message` value (UTF-8, percent-encoded).
pub fn encode_message(text: &str) -> String {
    utf8_percent_encode(text, MESSAGE).to_string()
}

/// The trailers-only gRPC answer to `e`. Headers the HTTP answer carries
/// (`WWW-Authenticate`, `Retry-After`, `Cache-Control`) are kept; the JSON
/// body is not sent, its description goes into `grpc-message`.
pub fn refusal(e: GatewayError, realm: &str) -> Response<Body> {
    let description = e.description();
    let (mut head, _) = e.into_head(realm);
    let code = status_code(head.status());
    *head.status_mut() = StatusCode::OK;
    let h = head.headers_mut();
    h.remove(CONTENT_LENGTH);
    h.remove(http::header::LOCATION);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(v) = HeaderValue::from_str(&encode_message(&description)) {
        h.insert("grpc-message", v);
    }
    // An empty body ends the stream with the header block itself, which is
    // what makes the answer trailers-only.
    head.map(|()| full(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_content_types_are_grpc() {
        for (ct, want) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC-web", true),
            ("application/json", false),
            ("application/grp", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&h), want, "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn the_status_table() {
        let table =
            [(401, 16), (403, 7), (503, 14), (500, 13), (400, 3), (431, 3), (421, 3), (404, 12), (413, 8), (429, 8), (502, 14), (504, 4), (408, 4), (302, 16)];
        for (http, grpc) in table {
            assert_eq!(status_code(StatusCode::from_u16(http).unwrap()), grpc, "{http}");
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("token expired: 100% sure ü\n"), "token expired: 100%25 sure %C3%BC%0A");
    }
}
