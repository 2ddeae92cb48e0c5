//! `[forward_auth]` refuses to load without what makes it safe: its own
//! listener, `trusted_proxies` (never empty, never everything) and an
//! explicit flavour; each error names the key and its line.

use authgear_gateway::config::{Config, Diagnostic, Flavour};

const BASE: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[auth]\nissuer = \"https://example.authgear.cloud\"\n\n[[routes]]\npath = \"/**\"\n\n";

fn errors(section: &str) -> Vec<Diagnostic> {
    match Config::from_toml(&format!("{BASE}{section}"), "t.toml") {
        Ok(_) => Vec::new(),
        Err(d) => d.errors().cloned().collect(),
    }
}

fn has(errs: &[Diagnostic], key: &str, line: usize) -> bool {
    errs.iter().any(|e| e.key == key && e.line == line)
}

#[test]
fn forward_auth_without_trusted_proxies_refuses_to_load() {
    let e = errors("[forward_auth]\nlisten = \"127.0.0.1:9091\"\nflavour = \"nginx\"\n");
    assert!(e.iter().any(|e| e.key == "forward_auth.trusted_proxies"), "{e:?}");
    let e = errors("[forward_auth]\nlisten = \"127.0.0.1:9091\"\nflavour = \"nginx\"\ntrusted_proxies = []\n");
    assert!(has(&e, "forward_auth.trusted_proxies", 13), "{e:?}");
}

#[test]
fn trusting_every_address_or_a_non_cidr_is_refused_with_its_line() {
    let e = errors("[forward_auth]\nlisten = \"127.0.0.1:9091\"\nflavour = \"nginx\"\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"0.0.0.0/0\",\n  \"::/0\",\n  \"not-an-ip\",\n]\n");
    let lines: Vec<usize> = e.iter().filter(|e| e.key == "forward_auth.trusted_proxies").map(|e| e.line).collect();
    assert_eq!(lines, [15, 16, 17], "{e:?}");
}

#[test]
fn the_flavour_is_required_and_never_guessed() {
    let e = errors("[forward_auth]\nlisten = \"127.0.0.1:9091\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
    assert!(e.iter().any(|e| e.key == "forward_auth.flavour"), "{e:?}");
    let e = errors("[forward_auth]\nlisten = \"127.0.0.1:9091\"\ntrusted_proxies = [\"10.0.0.0/8\"]\nflavour = \"auto\"\n");
    assert!(has(&e, "forward_auth.flavour", 13), "{e:?}");
    let e = errors("[forward_auth]\ntrusted_proxies = [\"10.0.0.0/8\"]\nflavour = \"nginx\"\n");
    assert!(e.iter().any(|e| e.key == "forward_auth.listen"), "{e:?}");
}

#[test]
fn a_valid_section_compiles_and_trusts_only_its_networks() {
    let text = format!("{BASE}[forward_auth]\nlisten = \"127.0.0.1:9091\"\ntrusted_proxies = [\"10.1.0.0/16\", \"192.0.2.7\"]\nflavour = \"caddy\"\n");
    let cfg = Config::from_toml(&text, "t.toml").unwrap_or_else(|d| panic!("{d}"));
    let fa = cfg.forward_auth.expect("section compiled");
    assert_eq!(fa.flavour, Flavour::Traefik);
    for (ip, trusted) in [("10.1.2.3", true), ("10.2.0.1", false), ("192.0.2.7", true), ("192.0.2.8", false), ("::ffff:10.1.0.9", true), ("::1", false)] {
        assert_eq!(fa.trusts(ip.parse().expect("ip")), trusted, "{ip}");
    }
}
