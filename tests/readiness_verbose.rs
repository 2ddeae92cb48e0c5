//! `/readyz?verbose`: each dependency with its state, so an operator sees
//! why a pod is not ready (keys not loaded, shutting down) and what is
//! degraded without making it unready (resolver down, reload rejected).

mod support;

use authgear_gateway::commands::devissuer::{DevIssuer, Mode};
use http::StatusCode;
use serde_json::Value;
use support::*;

const SESSION_ROUTES: &str = "[[routes]]\npath = \"/app/**\"\nmethod = \"session\"\n\n[[routes]]\npath = \"/api/**\"\n";

async fn verbose(gw: &Gw) -> (StatusCode, Value) {
    let (s, a) = get(&format!("{}/readyz?verbose", gw.admin), &[]).await;
    assert_eq!(a.header("content-type"), Some("application/json"));
    (s, a.json())
}

fn dep<'v>(doc: &'v Value, name: &str) -> &'v Value {
    doc["dependencies"].as_array().and_then(|d| d.iter().find(|x| x["name"] == name)).unwrap_or_else(|| panic!("no {name} in {doc}"))
}

#[tokio::test]
async fn verbose_readiness_lists_keys_resolver_reload_and_shutdown() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    let up = Upstream::start().await;
    // Nothing listens on the resolver's port: reported, but not a reason to be unready.
    let resolver = format!("http://127.0.0.1:{}/resolve", support::process::free_port());
    let auth = format!("resolver_url = \"{resolver}\"\nresolver_timeout = \"300ms\"\nresolver_connect_timeout = \"200ms\"");
    let text = config_text(&iss, up.addr, &auth, SESSION_ROUTES);
    let gw = start_ready(&text).await;
    assert_eq!(send("GET", &gw.url("/app/x"), &[("cookie", "session=s1")], b"").await.status, StatusCode::SERVICE_UNAVAILABLE);

    let (s, doc) = verbose(&gw).await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    assert_eq!(doc["ready"], true);
    let keys = dep(&doc, &format!("issuer_keys:{}", iss.issuer));
    assert_eq!((keys["state"].as_str(), keys["ok"].as_bool(), keys["decides_readiness"].as_bool()), (Some("ready"), Some(true), Some(true)), "{keys}");
    assert!(keys["keys"].as_u64().is_some_and(|n| n >= 1), "{keys}");
    let r = dep(&doc, "session_resolver");
    assert_eq!((r["state"].as_str(), r["ok"].as_bool(), r["decides_readiness"].as_bool()), (Some("unreachable"), Some(false), Some(false)), "{r}");
    assert!(r["failures"].as_u64().is_some_and(|n| n >= 1), "{r}");
    let c = dep(&doc, "config_reload");
    assert_eq!((c["state"].as_str(), c["last_reload_unix"].is_null()), (Some("none"), true), "{c}");
    assert_eq!(dep(&doc, "shutdown")["state"], "serving");

    // A rejected reload is shown with its time; the pod stays ready.
    let dir = support::front::temp_dir("readyz");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, "[server]\nlisten = 12\n").expect("write config");
    assert!(!authgear_gateway::reload::reload_from(&gw.server.gateway, &path));
    let (s, doc) = verbose(&gw).await;
    assert_eq!(s, StatusCode::OK);
    let c = dep(&doc, "config_reload");
    assert_eq!((c["state"].as_str(), c["ok"].as_bool(), c["reloads_rejected"].as_u64()), (Some("rejected"), Some(false), Some(1)), "{c}");
    assert!(c["last_reload_unix"].as_u64().is_some_and(|t| t.abs_diff(authgear_gateway::auth::now_unix()) < 60), "{c}");
    std::fs::write(&path, &text).expect("write config");
    assert!(authgear_gateway::reload::reload_from(&gw.server.gateway, &path));
    let (_, doc) = verbose(&gw).await;
    assert_eq!((dep(&doc, "config_reload")["state"].as_str(), dep(&doc, "config_reload")["config_version"].as_u64()), (Some("ok"), Some(2)));

    // Shutting down: unready, and the reason is named.
    gw.server.gateway.start_draining();
    let (s, doc) = verbose(&gw).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((dep(&doc, "shutdown")["state"].as_str(), dep(&doc, "shutdown")["ok"].as_bool()), (Some("draining"), Some(false)));
}

#[tokio::test]
async fn keys_that_never_loaded_are_named_as_the_reason() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.expect("issuer");
    iss.set_mode(Mode::Refuse);
    let up = Upstream::start().await;
    let gw = start_gateway(&config_text(&iss, up.addr, "", ROUTES)).await;
    let name = format!("issuer_keys:{}", iss.issuer);
    assert!(eventually(|| async { dep(&verbose(&gw).await.1, &name)["fetch_failures"].as_u64().unwrap_or(0) >= 1 }).await, "no failed fetch was reported");
    let (s, doc) = verbose(&gw).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc["ready"], false);
    let keys = dep(&doc, &name);
    assert_eq!((keys["state"].as_str(), keys["ok"].as_bool(), keys["keys"].as_u64()), (Some("not_loaded"), Some(false), Some(0)), "{keys}");
    assert!(doc["dependencies"].as_array().is_some_and(|d| d.iter().all(|x| x["name"] != "session_resolver")), "no resolver is configured: {doc}");

    // The plain /readyz keeps its own shape.
    let (s, a) = get(&format!("{}/readyz", gw.admin), &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.json().get("issuers").is_some() && a.json().get("dependencies").is_none());
}
