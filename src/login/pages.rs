//! The few responses the login flow writes itself: redirects carrying
//! cookies, and plain HTML pages (an error with a "try again" link, the
//! logout confirmation). Never cached; nothing from the request is echoed
//! unescaped.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{Response, StatusCode};

use crate::error::{full, Body};

/// A redirect to `location` that sets `cookies`.
pub fn redirect(location: &str, cookies: &[String]) -> Response<Body> {
    let mut r = base(StatusCode::FOUND, String::new(), cookies);
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(LOCATION, v);
        }
        Err(_) => *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    r
}

/// A plain page: `title`, one `message`, and a link (`href`, `label`).
pub fn page(status: StatusCode, title: &str, message: &str, link: Option<(&str, &str)>, cookies: &[String]) -> Response<Body> {
    let link = link.map_or(String::new(), |(href, label)| format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(label)));
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{m}</p>{link}</body></html>",
        t = escape(title),
        m = escape(message)
    );
    base(status, html, cookies)
}

/// The page a GET on the logout path shows: one button that POSTs.
pub fn logout_form(action: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Log out</title></head><body><h1>Log out?</h1>\
         <form method=\"post\" action=\"{}\"><button type=\"submit\">Log out</button></form></body></html>",
        escape(action)
    );
    base(StatusCode::OK, html, &[])
}

fn base(status: StatusCode, html: String, cookies: &[String]) -> Response<Body> {
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The flow's pages are never framed (clickjacking the logout button).
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(SET_COOKIE, v);
        }
    }
    r
}

/// HTML text and attribute escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
