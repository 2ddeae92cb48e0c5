//! `explain --forward-auth` shows how the decision endpoint rebuilt the
//! original request from the ingress's headers, then judges it as
//! `explain` does; a forged or foreign description is shown refused.

use authgear_gateway::commands::explain::Keys;
use authgear_gateway::commands::explain_forward_auth::explain_forward_auth;
use authgear_gateway::Config;

fn config(flavour: &str) -> Config {
    let prefix = if flavour == "envoy" { "path_prefix = \"/agw-check\"\n" } else { "" };
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[auth]\nissuer = \"https://myapp.authgear.cloud\"\n\
         [forward_auth]\nlisten = \"127.0.0.1:9091\"\ntrusted_proxies = [\"10.0.0.0/8\"]\nflavour = \"{flavour}\"\n{prefix}\
         [[routes]]\nname = \"public\"\npath = \"/public/**\"\nauth = \"public\"\n[[routes]]\nname = \"admin\"\npath = \"/admin/**\"\nroles = [\"admin\"]\n"
    );
    Config::from_toml(&text, "gateway.toml").unwrap_or_else(|d| panic!("{d}"))
}

fn h(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn explain_forward_auth_shows_the_rebuilt_request_and_the_normalized_route() {
    let cfg = config("nginx");
    let headers = h(&["X-Original-URL: https://app.example.com/public/../admin/users?x=1", "X-Original-Method: DELETE"]);
    let out = explain_forward_auth(&cfg, "GET", "http://10.0.0.5:9091/", &headers, Keys::Skip, 1_800_000_000).await.expect("explained");
    assert!(out.contains("flavour        nginx"), "{out}");
    assert!(out.contains("rebuilt        DELETE http://app.example.com/public/../admin/users?x=1"), "{out}");
    assert!(out.contains("normalized     /admin/users"), "{out}");
    assert!(out.contains("`admin`"), "{out}");
    assert!(out.contains("answered 403"), "{out}");
}

#[tokio::test]
async fn explain_forward_auth_shows_a_foreign_description_refused() {
    let cfg = config("nginx");
    let headers = h(&["X-Original-URL: https://app.example.com/admin/x", "X-Original-Method: GET", "X-Forwarded-Uri: /public/x"]);
    let out = explain_forward_auth(&cfg, "GET", "http://10.0.0.5:9091/", &headers, Keys::Skip, 1_800_000_000).await.expect("explained");
    assert!(out.contains("403 forward_auth_foreign_header"), "{out}");
    assert!(!out.contains("normalized"), "a refused description is not judged: {out}");
}

#[tokio::test]
async fn explain_forward_auth_takes_envoys_path_after_the_prefix() {
    let cfg = config("envoy");
    let out = explain_forward_auth(&cfg, "POST", "http://app.example.com/agw-check/public/form", &[], Keys::Skip, 1_800_000_000).await.expect("explained");
    assert!(out.contains("rebuilt        POST http://app.example.com/public/form"), "{out}");
    let out = explain_forward_auth(&cfg, "GET", "http://app.example.com/elsewhere/public/form", &[], Keys::Skip, 1_800_000_000).await.expect("explained");
    assert!(out.contains("400 forward_auth_invalid_header"), "{out}");
}
