//! The documentation keeps up with the parser: every key the config parser
//! knows is documented in gateway.toml and in the README's reference table.

use authgear_gateway::config::raw::known_keys;

#[test]
fn every_known_key_is_documented() {
    let example = std::fs::read_to_string("gateway.toml").expect("gateway.toml");
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let tables = [
        ("", ""),
        ("server", "server."),
        ("admin", "admin."),
        ("forward_auth", "forward_auth."),
        ("forward_auth.prefixes", "forward_auth.prefixes[]."),
        ("assertion", "assertion."),
        ("upstream", "upstream."),
        ("auth", "auth."),
        ("log", "log."),
        ("tracing", "tracing."),
        ("login", "login."),
        ("routes", "routes[]."),
    ];
    let mut missing = Vec::new();
    for (table, prefix) in tables {
        for key in known_keys(table).unwrap_or_default() {
            let in_example = example.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} ="))
                    || l.starts_with(&format!("[{key}"))
                    || l.starts_with(&format!("[[{key}"))
                    || l.starts_with(&format!("[{table}.{key}"))
                    || l.starts_with(&format!("[[{table}.{key}"))
            });
            if !in_example {
                missing.push(format!("gateway.toml: {prefix}{key}"));
            }
            let documented = if table.is_empty() {
                readme.contains(&format!("| `{key}")) || readme.contains(&format!("`{key}."))
            } else {
                readme.contains(&format!("| `{prefix}{key}`"))
            };
            if !documented {
                missing.push(format!("README.md: {prefix}{key}"));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented config keys: {missing:#?}");
}
