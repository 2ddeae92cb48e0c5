//! Logout tokens (OpenID Connect Back-Channel Logout 1.0) signed by the
//! test issuer's current key, as a provider would send them.

use authgear_gateway::commands::devissuer::DevIssuer;
use serde_json::{json, Value};

/// The event every logout token carries.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Valid claims for `aud`: a fresh `jti`, the event, no `nonce`; `sid` and
/// `sub` as given.
pub fn claims(iss: &DevIssuer, aud: &str, sid: Option<&str>, sub: Option<&str>) -> Value {
    let now = authgear_gateway::auth::now_unix();
    let mut c = json!({"iss": iss.issuer, "aud": aud, "iat": now, "exp": now + 120,
        "jti": format!("jti-{}", rand::random::<u64>()), "events": {EVENT: {}}});
    if let Some(s) = sid {
        c["sid"] = json!(s);
    }
    if let Some(s) = sub {
        c["sub"] = json!(s);
    }
    c
}

/// `claims` signed as `typ: logout+jwt` with the issuer's signing key.
pub fn sign(iss: &DevIssuer, claims: &Value) -> String {
    let key = iss.control.signing.lock().expect("signing key").clone();
    iss.sign_raw(&json!({"alg": key.default_alg(), "typ": "logout+jwt", "kid": key.kid}), claims)
}

/// The form body of a back-channel logout POST.
pub fn form(token: &str) -> String {
    form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", token).finish()
}
