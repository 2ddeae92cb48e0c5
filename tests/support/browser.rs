//! A small browser for the login tests: a cookie jar (kept per host, as
//! browsers do, honouring Max-Age=0 and Secure), redirects followed, and
//! origins mapped to local addresses (`https://gw.test` -> the gateway's
//! plain listener, as behind a TLS-terminating ingress).

use std::collections::HashMap;

use super::{send, Answer};

/// One stored cookie with the attributes the gateway set.
#[derive(Debug, Clone)]
pub struct Cookie {
    pub host: String,
    pub name: String,
    pub value: String,
    pub attrs: String,
}

/// A cookie jar plus an origin map.
#[derive(Default, Clone)]
pub struct Browser {
    pub jar: Vec<Cookie>,
    /// `scheme://host` -> `http://127.0.0.1:PORT` actually connected to.
    pub map: HashMap<String, String>,
    /// Every URL requested, in order.
    pub visited: Vec<String>,
}

fn split_url(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (scheme.to_owned(), authority.to_owned(), path.to_owned())
}

impl Browser {
    pub fn new(map: &[(&str, &str)]) -> Browser {
        Browser { map: map.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect(), ..Browser::default() }
    }

    /// The cookies the jar holds for `host` whose name starts with `prefix`.
    pub fn cookies(&self, prefix: &str) -> Vec<&Cookie> {
        self.jar.iter().filter(|c| c.name.starts_with(prefix)).collect()
    }

    /// Stores the `Set-Cookie` lines of an answer from `host`.
    pub fn absorb<'a>(&mut self, host: &str, lines: impl Iterator<Item = &'a str>) {
        for line in lines {
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else { continue };
            let attrs = parts.map(str::trim).collect::<Vec<_>>().join("; ");
            self.jar.retain(|c| !(c.host == host && c.name == name));
            if !attrs.contains("Max-Age=0") {
                self.jar.push(Cookie { host: host.to_owned(), name: name.to_owned(), value: value.to_owned(), attrs });
            }
        }
    }

    /// One request, cookies attached and stored; no redirect followed.
    pub async fn request(&mut self, method: &str, url: &str, extra: &[(&str, &str)]) -> Answer {
        self.visited.push(url.to_owned());
        let (scheme, authority, path) = split_url(url);
        let host = authority.split(':').next().unwrap_or("").to_owned();
        let origin = format!("{scheme}://{authority}");
        let target = match self.map.get(&origin) {
            Some(real) => format!("{real}{path}"),
            None => url.to_owned(),
        };
        let cookie = self
            .jar
            .iter()
            .filter(|c| c.host == host && (scheme == "https" || !c.attrs.contains("Secure")))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers: Vec<(&str, &str)> = vec![("host", &authority)];
        if !cookie.is_empty() {
            headers.push(("cookie", &cookie));
        }
        headers.extend_from_slice(extra);
        let answer = send(method, &target, &headers, b"").await;
        let lines: Vec<String> = answer.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
        self.absorb(&host, lines.iter().map(String::as_str));
        answer
    }

    /// A page load: navigation headers, redirects followed (at most 10).
    pub async fn navigate(&mut self, url: &str) -> Answer {
        let mut url = url.to_owned();
        for _ in 0..10 {
            let a = self.request("GET", &url, &[("accept", "text/html,*/*;q=0.8"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document")]).await;
            if !(a.status.is_redirection()) {
                return a;
            }
            let loc = a.header("location").expect("redirect with a Location").to_owned();
            url = if loc.starts_with('/') {
                let (scheme, authority, _) = split_url(&url);
                format!("{scheme}://{authority}{loc}")
            } else {
                loc
            };
        }
        panic!("redirect loop: {:#?}", self.visited);
    }

    /// The current page's link whose text contains `label`, made absolute.
    pub fn link(page: &Answer, base: &str, label: &str) -> String {
        let end = page.body.find(label).unwrap_or_else(|| panic!("no `{label}` on the page:\n{}", page.body));
        let start = page.body[..end].rfind("href=\"").expect("a link") + 6;
        let href = page.body[start..].split('"').next().unwrap_or("").replace("&amp;", "&");
        if href.starts_with('/') {
            format!("{base}{href}")
        } else {
            href
        }
    }
}
