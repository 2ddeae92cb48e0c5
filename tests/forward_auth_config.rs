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

const FA: &str = "[forward_auth]\nlisten = \"127.0.0.1:9091\"\ntrusted_proxies = [\"10.0.0.0/8\"]\nflavour = \"nginx\"\n";

#[test]
fn prefixes_give_decision_paths_under_them_their_own_flavour() {
    let text = format!(
        "{BASE}{FA}\n[[forward_auth.prefixes]]\npath = \"/envoy/\"\nflavour = \"envoy\"\n\n[[forward_auth.prefixes]]\npath = \"/caddy\"\nflavour = \"caddy\"\n"
    );
    let cfg = Config::from_toml(&text, "t.toml").unwrap_or_else(|d| panic!("{d}"));
    let fa = cfg.forward_auth.expect("section compiled");
    assert_eq!(fa.flavour_for("/envoy/app/x"), (Flavour::Envoy, "/envoy"));
    assert_eq!(fa.flavour_for("/envoy"), (Flavour::Envoy, "/envoy"));
    assert_eq!(fa.flavour_for("/caddy/verify").0, Flavour::Traefik);
    // Whole segments only; anything else is the listener's flavour.
    assert_eq!(fa.flavour_for("/envoyx/app").0, Flavour::Nginx);
    assert_eq!(fa.flavour_for("/_agw_auth").0, Flavour::Nginx);
}

#[test]
fn overlapping_or_malformed_prefixes_are_errors_naming_key_and_line() {
    let e = errors(&format!(
        "{FA}\n[[forward_auth.prefixes]]\npath = \"/a\"\nflavour = \"envoy\"\n\n[[forward_auth.prefixes]]\npath = \"/a/b\"\nflavour = \"caddy\"\n"
    ));
    assert!(has(&e, "forward_auth.prefixes[1].path", 20), "{e:?}");
    assert!(e.iter().any(|e| e.message.contains("overlaps `/a` (line 16)")), "{e:?}");
    for bad in ["a/b", "/a/../b", "/a//b", "/a?x", "/"] {
        let e = errors(&format!("{FA}\n[[forward_auth.prefixes]]\npath = \"{bad}\"\nflavour = \"envoy\"\n"));
        assert!(has(&e, "forward_auth.prefixes[0].path", 16), "{bad}: {e:?}");
    }
    let e = errors(&format!("{FA}\n[[forward_auth.prefixes]]\npath = \"/x\"\nflavour = \"auto\"\n"));
    assert!(has(&e, "forward_auth.prefixes[0].flavour", 17), "{e:?}");
    let e = errors(&format!("{FA}\n[[forward_auth.prefixes]]\npath = \"/x\"\nflavours = \"nginx\"\n"));
    assert!(e.iter().any(|e| e.key.starts_with("forward_auth.prefixes[0].flavours")), "{e:?}");
    // A default envoy flavour reads the client's path: with prefixes it
    // needs a path_prefix of its own that no prefix overlaps.
    let envoy = "[forward_auth]\nlisten = \"127.0.0.1:9091\"\ntrusted_proxies = [\"10.0.0.0/8\"]\nflavour = \"envoy\"\n";
    let e = errors(&format!("{envoy}\n[[forward_auth.prefixes]]\npath = \"/nginx\"\nflavour = \"nginx\"\n"));
    assert!(e.iter().any(|e| e.key == "forward_auth.path_prefix"), "{e:?}");
    let e = errors(&format!("{envoy}path_prefix = \"/check\"\n\n[[forward_auth.prefixes]]\npath = \"/check/nginx\"\nflavour = \"nginx\"\n"));
    assert!(has(&e, "forward_auth.prefixes[0].path", 17), "{e:?}");
}
