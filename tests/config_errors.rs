//! Config errors people can act on: every problem at once, each with file,
//! line, column, key and (where obvious) the fix; `check` exit codes and
//! JSON output; `${ENV}` expansion.

use std::path::Path;
use std::process::Command;

use authgear_gateway::config::{Config, Severity};

/// Only the errors of a failed load (warnings, such as the missing
/// `allowed_hosts` one, come along in the same list).
fn errors(d: authgear_gateway::config::Diagnostics) -> Vec<authgear_gateway::config::Diagnostic> {
    d.items.into_iter().filter(|i| i.severity == Severity::Error).collect()
}

fn gateway_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_authgear-gateway"))
}

#[test]
fn the_example_config_is_valid() {
    let out = gateway_bin().args(["check", "--config", "gateway.toml"]).output().expect("run check");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "gateway.toml: ok");
}

#[test]
fn check_lists_every_error_with_line_and_fix() {
    let out = gateway_bin().args(["check", "--config", "tests/golden/bad.toml"]).output().expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = "\
tests/golden/bad.toml:2:10: error: `server.listen`: `0.0.0.0:80800` is not a socket address (write it as IP:PORT, e.g. \"0.0.0.0:8080\")
tests/golden/bad.toml:3:26: error: `server.request_header_timeout`: `10 seconds`: unknown unit ` seconds` (use ms, s, m, h or d)
tests/golden/bad.toml:6:7: error: `upstream.url`: must start with http:// or https://
tests/golden/bad.toml:10:1: error: `auth.audience`: unknown key in [auth] (did you mean `audiences`?)
tests/golden/bad.toml:11:10: error: `auth.leeway`: `30`: missing unit (ms, s, m, h or d)
tests/golden/bad.toml:14:1: error: `headers.\"authorization\"`: this header is managed by the gateway and cannot carry identity
tests/golden/bad.toml:18:8: error: `routes[0]`: unknown variant `requried`, expected one of `public`, `optional`, `required` (did you mean `required`?)
tests/golden/bad.toml:21:8: error: `routes[1].path`: must start with `/`
tests/golden/bad.toml:27:8: error: `routes[2].auth`: a `public` route cannot require roles, scopes or claims (set auth = \"required\")
tests/golden/bad.toml:29:1: error: `routes[2].methd`: unknown key in [routes] (did you mean `method`?)
tests/golden/bad.toml: 10 errors
";
    assert_eq!(text, expected);
}

#[test]
fn check_json_gives_the_same_list() {
    let out = gateway_bin().args(["check", "--format", "json", "--config", "tests/golden/bad.toml"]).output().expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    let items = v["diagnostics"].as_array().expect("array");
    assert_eq!(items.len(), 10);
    assert_eq!(items[3]["key"], "auth.audience");
    assert_eq!(items[3]["line"], 10);
    assert_eq!(items[3]["column"], 1);
    assert_eq!(items[3]["hint"], "did you mean `audiences`?");
    assert_eq!(items[3]["severity"], "error");
}

#[test]
fn missing_file_and_syntax_errors_are_reported() {
    let out = gateway_bin().args(["check", "--config", "does/not/exist.toml"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot read the config file"));
    let err = Config::from_toml("[server]\nlisten = \"x\"\n[[routes]\n", "t.toml").unwrap_err();
    assert_eq!(err.items.len(), 1);
    assert_eq!(err.items[0].line, 3);
}

#[test]
fn running_with_a_bad_config_starts_nothing() {
    let out = gateway_bin().args(["--config", "tests/golden/bad.toml"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing started"));
}

const MINIMAL: &str = r#"
[upstream]
url = "${UPSTREAM_URL:-http://127.0.0.1:3000}"
[auth]
issuer = "https://${PROJECT}.authgear.cloud"
[[routes]]
path = "/**"
"#;

#[test]
fn env_vars_expand_with_defaults_and_missing_ones_are_named() {
    let env = |k: &str| (k == "PROJECT").then(|| "myapp".to_owned());
    let cfg = Config::from_toml_with_env(MINIMAL, "t.toml", &env).expect("valid");
    assert_eq!(cfg.issuers[0].issuer, "https://myapp.authgear.cloud");
    assert_eq!(cfg.issuers[0].audiences, vec!["https://myapp.authgear.cloud".to_owned()]);
    assert_eq!(cfg.upstreams[0].authority.as_str(), "127.0.0.1:3000");
    let none = |_: &str| None;
    let err = errors(Config::from_toml_with_env(MINIMAL, "t.toml", &none).unwrap_err());
    assert_eq!(err.len(), 1);
    assert!(err[0].message.contains("`PROJECT`"), "{}", err[0]);
    assert_eq!(err[0].line, 5);
}

#[test]
fn shadowed_routes_are_warned_about() {
    let text = r#"
[upstream]
url = "http://127.0.0.1:3000"
[auth]
issuer = "https://x.authgear.cloud"
[[routes]]
path = "/api/**"
[[routes]]
path = "/api/admin/**"
roles = ["admin"]
"#;
    let cfg = Config::from_toml(text, "t.toml").expect("warnings do not fail the load");
    let w: Vec<_> = cfg.warnings.items.iter().filter(|d| d.severity == Severity::Warning && d.key.starts_with("routes")).collect();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, 8);
    assert!(w[0].message.contains("can never match"), "{}", w[0]);
    assert!(Path::new("gateway.toml").exists());
}

#[test]
fn routes_that_differ_only_by_case_are_warned_about_when_matched_case_insensitively() {
    let routes = r#"
[upstream]
url = "http://127.0.0.1:3000"
[auth]
issuer = "https://x.authgear.cloud"
[[routes]]
path = "/Admin/**"
roles = ["admin"]
[[routes]]
path = "/admin/**"
host = "admin.example.com"
[[routes]]
path = "/ADMIN/**"
"#;
    let warnings = |text: &str| -> Vec<(usize, String)> {
        let cfg = Config::from_toml(text, "t.toml").expect("warnings do not fail the load");
        cfg.warnings.items.iter().filter(|d| d.severity == Severity::Warning && d.key.starts_with("routes")).map(|d| (d.line, d.message.clone())).collect()
    };
    assert_eq!(warnings(routes), vec![], "case-sensitive routes that differ by case are different routes");
    let w = warnings(&routes.replacen("[upstream]", "[server]\npath_case = \"insensitive\"\n[upstream]", 1));
    assert_eq!(w.len(), 2, "{w:?}");
    // Another host: not shadowed, but the case difference is worth a word.
    assert_eq!(w[0].0, 11);
    assert!(w[0].1.contains("only by letter case"), "{}", w[0].1);
    // Same host and methods: it can never match.
    assert_eq!(w[1].0, 14);
    assert!(w[1].1.contains("can never match") && w[1].1.contains("letter case"), "{}", w[1].1);
    let err = Config::from_toml(&routes.replacen("[upstream]", "[server]\npath_case = \"lower\"\n[upstream]", 1), "t.toml").unwrap_err();
    assert!(err.items.iter().any(|d| d.key == "server.path_case" && d.line == 3), "{err}");
}

#[test]
fn routes_are_required_and_token_routes_need_an_issuer() {
    let err = Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:1\"\n", "t.toml").unwrap_err();
    assert!(err.items.iter().any(|d| d.key == "routes"));
    let err = Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath = \"/**\"\n", "t.toml").unwrap_err();
    assert!(err.items.iter().any(|d| d.message.contains("no issuer")), "{err}");
    // A public-only gateway needs no issuer.
    assert!(Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath = \"/**\"\nauth = \"public\"\n", "t.toml").is_ok());
}

#[test]
fn session_mode_keys_are_validated_with_lines() {
    let text = r#"
[upstream]
url = "http://127.0.0.1:3000"
[auth]
issuer = "https://x.authgear.cloud"
method = "session"
session_cookies = ["session", "bad name"]
session_cache_ttl = "10 s"
login_url = "//evil.com/login"
login_return_origin = "https://app.example.com/path"
[[routes]]
path = "/a/**"
login_redirect = true
[[routes]]
path = "/b/**"
method = "cookie"
[[routes]]
path = "/**"
auth = "public"
login_redirect = true
"#;
    let err = Config::from_toml(text, "t.toml").unwrap_err();
    let at = |key: &str| err.items.iter().find(|d| d.key == key).map(|d| d.line).unwrap_or_else(|| panic!("no error for {key}:\n{err}"));
    assert_eq!(at("auth.session_cookies"), 7);
    assert_eq!(at("auth.session_cache_ttl"), 8);
    assert_eq!(at("auth.login_url"), 9);
    assert_eq!(at("auth.login_return_origin"), 10);
    // login_url was refused, so the route has no login page to send to.
    assert_eq!(at("routes[0].login_redirect"), 13);
    assert!(err.items.iter().any(|d| d.line == 16 && d.message.contains("unknown variant `cookie`")), "{err}");
    assert_eq!(at("routes[2].login_redirect"), 20);
}

#[test]
fn session_mode_defaults_and_resolver_without_issuer() {
    let text =
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n[auth]\nissuer = \"https://x.authgear.cloud/\"\n[[routes]]\npath = \"/**\"\nmethod = \"jwt_or_session\"\n";
    let cfg = Config::from_toml(text, "t.toml").expect("valid");
    let s = &cfg.session;
    assert_eq!(s.resolver_url.as_ref().map(|u| u.to_string()).as_deref(), Some("https://x.authgear.cloud/_resolver/resolve"));
    assert_eq!(s.cookies, vec!["session".to_owned()]);
    assert_eq!(s.cache_ttl, std::time::Duration::from_secs(10));
    assert_eq!(s.negative_ttl, std::time::Duration::from_secs(2));
    assert_eq!(s.cache_max_entries, 10_000);
    assert!(s.login.is_none());
    // Session routes need the resolver; an issuer alone provides it, and
    // resolver_url alone is enough without an issuer.
    let no_issuer = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath = \"/**\"\nmethod = \"session\"\n";
    let err = Config::from_toml(no_issuer, "t.toml").unwrap_err();
    assert!(err.items.iter().any(|d| d.key == "routes[0].method" && d.message.contains("resolver")), "{err}");
    let with_url = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[auth]\nresolver_url = \"http://127.0.0.1:9/_resolver/resolve\"\nmethod = \"session\"\n[[routes]]\npath = \"/**\"\n";
    assert!(Config::from_toml(with_url, "t.toml").is_ok());
    // ...but a jwt route still needs an issuer.
    let jwt_route = format!("{with_url}[[routes]]\npath = \"/jwt/**\"\nmethod = \"jwt\"\n");
    assert!(Config::from_toml(&jwt_route, "t.toml").is_err());
}

#[test]
fn worker_count_defaults_to_the_cpus_and_must_be_positive() {
    let env = |k: &str| (k == "PROJECT").then(|| "myapp".to_owned());
    let cfg = Config::from_toml_with_env(MINIMAL, "t.toml", &env).expect("valid");
    assert_eq!(cfg.server.workers, std::thread::available_parallelism().map_or(1, |n| n.get()));
    let two = format!("[server]\nworkers = 2\n{MINIMAL}");
    assert_eq!(Config::from_toml_with_env(&two, "t.toml", &env).expect("valid").server.workers, 2);
    let zero = format!("[server]\nworkers = 0\n{MINIMAL}");
    let err = errors(Config::from_toml_with_env(&zero, "t.toml", &env).unwrap_err());
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].key, "server.workers");
    assert_eq!(err[0].line, 2);
    assert!(err[0].message.contains("positive"), "{}", err[0]);
}

#[test]
fn listen_backlog_defaults_to_1024_and_must_fit_listen() {
    let env = |k: &str| (k == "PROJECT").then(|| "myapp".to_owned());
    let cfg = Config::from_toml_with_env(MINIMAL, "t.toml", &env).expect("valid");
    assert_eq!(cfg.server.listen_backlog, 1024);
    let set = format!("[server]\nlisten_backlog = 4096\n{MINIMAL}");
    assert_eq!(Config::from_toml_with_env(&set, "t.toml", &env).expect("valid").server.listen_backlog, 4096);
    for bad in ["0", "-1", "70000"] {
        let text = format!("[server]\nlisten_backlog = {bad}\n{MINIMAL}");
        let err = errors(Config::from_toml_with_env(&text, "t.toml", &env).unwrap_err());
        assert_eq!(err.len(), 1, "{bad}");
        assert_eq!(err[0].key, "server.listen_backlog");
        assert_eq!(err[0].line, 2);
        assert!(err[0].message.contains("between 1 and 65535"), "{}", err[0]);
    }
}
