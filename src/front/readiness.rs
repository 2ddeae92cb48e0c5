//! `/readyz?verbose`: every dependency the gateway has, with its state and
//! whether it decides readiness, so an operator sees why a pod is not
//! ready without reading logs.
//!
//! What decides readiness is unchanged from the plain `/readyz`: every
//! issuer's keys usable and the gateway not shutting down. The session
//! resolver, the login's Redis session store and the last config reload are reported but never make the
//! pod unready: session routes answer 503 themselves while the resolver
//! is down (JWT and public routes keep working), and a rejected reload
//! leaves the previous, valid config serving.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use crate::auth::jwks::KeyState;
use crate::state::Gateway;

/// True when the query asks for the verbose form: `verbose` present, with
/// no value or any value but `0` and `false`.
pub fn wants_verbose(query: Option<&str>) -> bool {
    query.unwrap_or_default().split('&').any(|p| match p.split_once('=') {
        None => p == "verbose",
        Some((k, v)) => k == "verbose" && v != "0" && !v.eq_ignore_ascii_case("false"),
    })
}

/// The verbose readiness document (readiness itself is `gw.is_ready()`).
pub fn verbose(gw: &Gateway) -> Value {
    let snap = gw.snapshot();
    let mut deps = Vec::new();
    for k in snap.keys.iter() {
        let state = match k.state() {
            KeyState::Ready => "ready",
            KeyState::NotLoaded => "not_loaded",
            KeyState::Stale => "stale",
        };
        deps.push(json!({
            "name": format!("issuer_keys:{}", k.issuer),
            "kind": "issuer_keys",
            "issuer": k.issuer,
            "state": state,
            "ok": state == "ready",
            "decides_readiness": true,
            "keys": k.snapshot().map_or(0, |s| s.keys.len()),
            "key_age_secs": k.key_age().map(|a| a.as_secs()),
            "fetch_attempts": k.stats.fetch_attempts.load(Relaxed),
            "fetch_failures": k.stats.fetch_failures.load(Relaxed),
        }));
    }
    if let Some(s) = snap.sessions.as_ref() {
        let reachable = s.is_reachable();
        deps.push(json!({
            "name": "session_resolver",
            "kind": "session_resolver",
            "state": if reachable { "reachable" } else { "unreachable" },
            "ok": reachable,
            "decides_readiness": false,
            "calls": s.stats.resolver_calls.load(Relaxed),
            "failures": s.stats.resolver_failures.load(Relaxed),
        }));
    }
    if let Some(r) = snap.login.as_ref().and_then(|l| l.store.redis()) {
        // Like the resolver: session routes answer 503 themselves while
        // Redis is down, so it never makes the pod unready.
        let state = r.state();
        deps.push(json!({
            "name": "session_store",
            "kind": "redis",
            "state": state,
            "ok": state != "unreachable",
            "decides_readiness": false,
        }));
    }
    let last = gw.last_reload_ok();
    deps.push(json!({
        "name": "config_reload",
        "kind": "config_reload",
        "state": match last { None => "none", Some(true) => "ok", Some(false) => "rejected" },
        "ok": last != Some(false),
        "decides_readiness": false,
        "config_version": snap.version,
        "last_reload_unix": gw.last_reload_at(),
        "reloads_ok": gw.reloads_ok.load(Relaxed),
        "reloads_rejected": gw.reloads_failed.load(Relaxed),
    }));
    let draining = gw.is_draining();
    deps.push(json!({
        "name": "shutdown",
        "kind": "shutdown",
        "state": if draining { "draining" } else { "serving" },
        "ok": !draining,
        "decides_readiness": true,
    }));
    json!({ "ready": gw.is_ready(), "dependencies": deps })
}

#[cfg(test)]
mod tests {
    use super::wants_verbose;

    #[test]
    fn verbose_query_forms() {
        for q in ["verbose", "verbose=1", "x=1&verbose", "verbose=true"] {
            assert!(wants_verbose(Some(q)), "{q}");
        }
        for q in [None, Some(""), Some("verbose=0"), Some("verbose=false"), Some("verbosely")] {
            assert!(!wants_verbose(q), "{q:?}");
        }
    }
}
