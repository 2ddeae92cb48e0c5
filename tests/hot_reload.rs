//! Hot reload: rewriting the config (by file write, Kubernetes symlink swap
//! or SIGHUP) swaps it in whole; a bad config is rejected and the old one
//! keeps serving; no request fails or is judged by a mix of two configs.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authgear_gateway::commands::devissuer::DevIssuer;
use http::StatusCode;
use serde_json::json;
use support::*;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("agw-{tag}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes through a temporary file and a rename, as editors and config
/// management tools do, so a reader never sees half a file.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn versioned(iss: &DevIssuer, up: std::net::SocketAddr, v: u32) -> String {
    let routes = format!(
        r#"
[[routes]]
path = "/x/**"
roles = ["r{v}"]
headers = {{ "x-rule-v{v}" = "sub" }}
"#
    );
    config_text(iss, up, "", &routes).replace("shutdown_drain = \"0s\"", "shutdown_drain = \"0s\"\nconfig_watch_interval = \"20ms\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_never_fails_or_mixes_configs() {
    authgear_gateway::install_crypto_provider();
    let iss = Arc::new(DevIssuer::start().await.unwrap());
    let up = Arc::new(Upstream::start().await);
    let dir = temp_dir("reload");
    let path = dir.join("gateway.toml");
    write_atomic(&path, &versioned(&iss, up.addr, 1));
    let gw = Arc::new(start_ready(&std::fs::read_to_string(&path).unwrap()).await);
    let watcher = authgear_gateway::reload::spawn_watcher(gw.server.gateway.clone(), path.clone());

    let both = iss.mint("both", json!({"https://authgear.com/claims/user/roles": ["r1", "r2"]}));
    let only1 = iss.mint("only1", json!({"https://authgear.com/claims/user/roles": ["r1"]}));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let (ok_b, forbidden_b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for (who, token) in [("a", both.clone()), ("b", only1.clone())] {
        let (gw, stop, failed, ok_b, forbidden_b) = (gw.clone(), stop.clone(), failed.clone(), ok_b.clone(), forbidden_b.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let s = get_with(&gw.url(&format!("/x/{who}/{i}")), &token).await.status;
                match (who, s) {
                    ("a", StatusCode::OK) => {}
                    ("b", StatusCode::OK) => {
                        ok_b.fetch_add(1, Ordering::Relaxed);
                    }
                    ("b", StatusCode::FORBIDDEN) => {
                        forbidden_b.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for round in 0..24 {
        let text = match round % 4 {
            0 => versioned(&iss, up.addr, 2),
            2 => versioned(&iss, up.addr, 1),
            _ => "[server\nthis is not valid".to_owned(),
        };
        write_atomic(&path, &text);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    watcher.abort();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reloads");
    // Every forwarded request carries exactly one rule header, and "b"
    // (role r1 only) was only ever let through by version 1's rules.
    let (mut v1, mut v2) = (0, 0);
    for s in up.seen() {
        let h1 = s.headers.contains_key("x-rule-v1");
        let h2 = s.headers.contains_key("x-rule-v2");
        assert!(h1 ^ h2, "{} was judged by a mix of configs", s.target);
        if s.target.starts_with("/x/b/") {
            assert!(h1, "{} passed with role r1 under version 2", s.target);
        }
        v1 += usize::from(h1);
        v2 += usize::from(h2);
    }
    let g = &gw.server.gateway;
    let (ok, bad) = (g.reloads_ok.load(Ordering::Relaxed), g.reloads_failed.load(Ordering::Relaxed));
    eprintln!(
        "reload under load: {} requests, v1 {v1}, v2 {v2}, b ok {} / 403 {}, reloads ok {ok} failed {bad}",
        up.count(),
        ok_b.load(Ordering::Relaxed),
        forbidden_b.load(Ordering::Relaxed)
    );
    assert!(v1 > 0 && v2 > 0, "both configs must have served");
    assert!(ok_b.load(Ordering::Relaxed) > 0 && forbidden_b.load(Ordering::Relaxed) > 0);
    assert!(ok >= 3 && bad >= 3, "reloads ok {ok}, failed {bad}");
    let (_, ready) = get(&format!("{}/readyz", gw.admin), &[]).await;
    let r = ready.json();
    assert!(r["reloads_ok"].as_u64().unwrap_or(0) >= 3 && r["reloads_failed"].as_u64().unwrap_or(0) >= 3, "{r}");
    assert!(r["last_reload_ok"].is_boolean(), "{r}");
    // The issuer is unchanged: its key cache was reused, not refetched.
    assert_eq!(iss.jwks_fetches(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_kubernetes_configmap_symlink_swap_is_picked_up() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let dir = temp_dir("configmap");
    // The layout kubelet writes: gateway.toml -> ..data/gateway.toml,
    // ..data -> ..<timestamp>/ swapped atomically on update.
    let v1 = dir.join("..2026_11_26_v1");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("gateway.toml"), versioned(&iss, up.addr, 1)).unwrap();
    std::os::unix::fs::symlink("..2026_11_26_v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/gateway.toml", dir.join("gateway.toml")).unwrap();
    let path = dir.join("gateway.toml");
    let gw = start_ready(&std::fs::read_to_string(&path).unwrap()).await;
    let _watcher = authgear_gateway::reload::spawn_watcher(gw.server.gateway.clone(), path.clone());
    let t = iss.mint("u", json!({"https://authgear.com/claims/user/roles": ["r2"]}));
    assert_eq!(get_with(&gw.url("/x/1"), &t).await.status, StatusCode::FORBIDDEN);

    let v2 = dir.join("..2026_11_26_v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("gateway.toml"), versioned(&iss, up.addr, 2)).unwrap();
    std::os::unix::fs::symlink("..2026_11_26_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();

    let mut status = StatusCode::FORBIDDEN;
    for _ in 0..250 {
        status = get_with(&gw.url("/x/1"), &t).await.status;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::OK, "the swapped ConfigMap was not loaded");
    assert!(up.last().headers.contains_key("x-rule-v2"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sighup_reloads_the_running_binary_and_bad_configs_are_rejected() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let dir = temp_dir("sighup");
    let path = dir.join("gateway.toml");
    let text = |v: u32| versioned(&iss, up.addr, v).replace("config_watch_interval = \"20ms\"", "config_watch_interval = \"0s\"");
    let bin = Binary::start(&text(1), &path, std::process::Stdio::null()).await;
    // Later rewrites must keep the ports the binary bound.
    let fixed = std::fs::read_to_string(&path).unwrap();
    let with_ports = |v: u32| {
        let mut t = text(v);
        for line in fixed.lines().filter(|l| l.starts_with("listen = ")) {
            t = t.replacen("listen = \"127.0.0.1:0\"", line, 1);
        }
        t
    };
    let t = iss.mint("u", json!({"https://authgear.com/claims/user/roles": ["r2"]}));
    let url = format!("{}/x/1", bin.base);
    assert_eq!(get_with(&url, &t).await.status, StatusCode::FORBIDDEN);

    // A broken file plus SIGHUP: rejected, the old config keeps serving.
    std::fs::write(&path, "[[routes]]\npath = 42\n").unwrap();
    bin.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_with(&url, &t).await.status, StatusCode::FORBIDDEN);

    std::fs::write(&path, with_ports(2)).unwrap();
    bin.signal(libc::SIGHUP);
    let reloaded = eventually(|| async { get_with(&url, &t).await.status == StatusCode::OK }).await;
    bin.signal(libc::SIGTERM);
    let mut child = bin.child;
    let exit = child.wait().expect("wait");
    assert!(reloaded, "SIGHUP did not load the new config");
    assert!(exit.success(), "exit status {exit:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_reload_names_the_changes_that_wait_for_a_restart() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let dir = temp_dir("restart-only");
    let path = dir.join("gateway.toml");
    let bin = Binary::start(&versioned(&iss, up.addr, 1), &path, std::process::Stdio::piped()).await;
    // Same ports as bound, a new route rule, and two keys a reload cannot apply.
    let mut next = versioned(&iss, up.addr, 2).replacen("[server]\n", "[server]\nlisten_backlog = 2048\nworkers = 3\n", 1);
    for line in std::fs::read_to_string(&path).unwrap().lines().filter(|l| l.starts_with("listen = ")) {
        next = next.replacen("listen = \"127.0.0.1:0\"", line, 1);
    }
    write_atomic(&path, &next);
    let t = iss.mint("u", json!({"https://authgear.com/claims/user/roles": ["r2"]}));
    let url = format!("{}/x/1", bin.base);
    let reloaded = eventually(|| async { get_with(&url, &t).await.status == StatusCode::OK }).await;
    bin.signal(libc::SIGTERM);
    let out = bin.child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(reloaded, "the new config was not loaded: {log}");
    for key in ["server.listen_backlog", "server.workers"] {
        assert!(log.contains(&format!("{key} changed: it takes effect only after a restart")), "no warning for {key}: {log}");
    }
    assert!(!log.contains("server.listen changed"), "the unchanged listen address was reported: {log}");
    let _ = std::fs::remove_dir_all(dir);
}
