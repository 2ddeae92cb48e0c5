//! `authgear-gateway explain --forward-auth`: how the decision endpoint
//! would rebuild the original request from what an ingress sends, then the
//! usual `explain` of that rebuilt request.

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::{HeaderMap, Method, Uri};

use super::explain::{explain, Keys};
use crate::config::{Config, Flavour};
use crate::front::forward_auth::flavour::{self, Asked};

/// Explains the decision request `method url` carrying `headers` (each
/// `Name: value`, as the ingress would send them) under `cfg`.
pub async fn explain_forward_auth(cfg: &Config, method: &str, url: &str, headers: &[String], keys: Keys, now: u64) -> Result<String, String> {
    let fa = cfg.forward_auth.as_ref().ok_or("the config has no [forward_auth] section")?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let uri: Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let mut map = HeaderMap::new();
    for h in headers {
        let (name, value) = h.split_once(':').ok_or_else(|| format!("`{h}` is not `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("`{name}` is not a header name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| format!("the value of {name} is not a header value"))?;
        map.append(name, value);
    }
    if let (None, Some(a)) = (map.get(HOST), uri.authority()) {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            map.insert(HOST, v);
        }
    }
    let mut out = String::new();
    let (flavour_of_path, path_prefix) = fa.flavour_for(uri.path());
    out.push_str(&format!("{:<15}{}\n", "flavour", flavour_of_path.as_str()));
    let original = match flavour::rebuild(flavour_of_path, path_prefix, Asked { method: &method, uri: &uri, headers: &map }) {
        Ok(r) => r,
        Err(m) => {
            let status = if flavour_of_path == Flavour::Nginx { 403 } else { 400 };
            out.push_str(&format!("{:<15}refused: {}\n", "rebuilt", m.describe()));
            out.push_str(&format!("{:<15}{status} {}: the ingress refuses the request\n", "verdict", m.reason()));
            return Ok(out);
        }
    };
    let host = original.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let target = original.uri().path_and_query().map_or("/", |p| p.as_str());
    let rebuilt_url = format!("http://{host}{target}");
    out.push_str(&format!("{:<15}{} {rebuilt_url}\n", "rebuilt", original.method()));
    let token = original.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    out.push_str(&explain(cfg, original.method().as_str(), &rebuilt_url, token, keys, now).await?);
    if flavour_of_path == Flavour::Nginx {
        out.push_str(&format!("{:<15}nginx: a 4xx other than 401 is answered 403, a login 302 as 401 + X-Auth-Signin\n", "answer"));
    }
    out.push_str(&format!("{:<15}an allow answer carries every identity header of the route, empty when its claim is absent\n", ""));
    Ok(out)
}
