//! Request smuggling: whatever framing a client writes (Content-Length and
//! Transfer-Encoding together, duplicated or obfuscated, folded header
//! lines, bad chunk sizes), the upstream receives exactly the requests the
//! gateway judged, each re-framed by the gateway itself. A second request
//! hidden in a body never reaches the upstream unjudged.

mod support;

use support::*;

/// Sends `wire` on one connection and returns the statuses of every answer.
async fn statuses(gw: &Gw, wire: &str) -> Vec<u16> {
    let answer = raw(gw.server.addr, wire).await;
    answer.match_indices("HTTP/1.1 ").filter_map(|(i, _)| answer[i + 9..].get(..3)?.parse().ok()).collect()
}

/// Each case hides `GET /admin/secret` (a route that needs the admin role)
/// behind a public request with ambiguous framing.
const HIDDEN: &str = "GET /admin/secret HTTP/1.1\r\nHost: a\r\nX-Authgear-User-Id: admin\r\n\r\n";

fn cases() -> Vec<(&'static str, String)> {
    let body = format!("0\r\n\r\n{HIDDEN}");
    vec![
        ("CL and TE", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}", body.len())),
        ("TE and CL", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{body}")),
        ("two Content-Lengths", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{HIDDEN}", HIDDEN.len())),
        ("Content-Length list", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0, {}\r\n\r\n{HIDDEN}", HIDDEN.len())),
        ("signed Content-Length", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: +{}\r\n\r\n{HIDDEN}", HIDDEN.len())),
        ("xchunked", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n{HIDDEN}")),
        ("chunked, identity", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n{body}")),
        ("chunked twice", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{body}")),
        ("TE with a space before the colon", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n{HIDDEN}")),
        ("obs-fold TE", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nX-Pad: 1\r\n Transfer-Encoding: chunked\r\n\r\n{HIDDEN}")),
        ("bare LF line ends", format!("POST /public/x HTTP/1.1\nHost: a\nContent-Length: 0\nTransfer-Encoding: chunked\n\n{body}")),
        ("chunk size with junk", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n{HIDDEN}")),
        (
            "oversized chunk size",
            format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nx\r\n0\r\n\r\n{HIDDEN}"),
        ),
        ("GET with a body", format!("GET /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{HIDDEN}", HIDDEN.len())),
    ]
}

#[tokio::test]
async fn ambiguous_framing_never_smuggles_a_request_past_the_gateway() {
    let (_iss, up, gw) = setup().await;
    let mut report = Vec::new();
    for (name, wire) in cases() {
        let before = up.count();
        let got = statuses(&gw, &wire).await;
        let seen: Vec<Seen> = up.seen()[before..].to_vec();
        report.push(format!("{name:<34} gateway answered {got:?}, upstream saw {:?}", seen.iter().map(|s| s.target.as_str()).collect::<Vec<_>>()));
        for s in &seen {
            assert!(!s.target.starts_with("/admin"), "{name}: a hidden request reached the upstream: {s:?}");
            assert!(s.headers.get("x-authgear-user-id").is_none(), "{name}: a forged identity reached the upstream");
            assert!(s.headers.get("transfer-encoding").map_or(true, |v| v == "chunked"), "{name}: {s:?}");
            // Bytes after the end of a chunked body are the next request, never
            // this one's body. (A GET's declared body is data, sent with the
            // gateway's own Content-Length.)
            if !name.starts_with("GET") {
                assert!(!String::from_utf8_lossy(&s.body).contains("HTTP/1.1"), "{name}: a request travelled as a body: {:?}", s.body);
            }
        }
        // A broken chunked body is the client's fault, never an upstream's.
        if name.contains("chunk size") {
            assert_eq!(got.first(), Some(&400), "{name}");
        }
        // The hidden request, when the gateway read it as a request of its
        // own, was judged: it needs a token.
        assert!(got.iter().skip(1).all(|&s| s == 401 || s == 400), "{name}: {got:?}");
    }
    eprintln!("{}", report.join("\n"));
}
