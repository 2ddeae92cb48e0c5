//! The layout rule of `docs/ARCHITECTURE.md`, checked on the source: every
//! `crate::`, `super::` and `self::` path in `src/`, and every relative one
//! into a child module, is resolved to the file it names, and the resulting import graph must have no cycle and no edge
//! from a lower folder up to a higher one (nor between two folders on the
//! same level).
//!
//! `AGW_ARCH_SRC=<dir> cargo test --test architecture -- --nocapture`
//! prints the same figures for another tree (an old checkout) without
//! judging it; `AGW_ARCH_EDGES=1` lists every edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Folders (or root files) from the top of the house to the floor. A file
/// may import from its own folder and from anything with a lower rank.
const LAYERS: &[(&str, u8)] = &[
    ("commands", 14),
    ("lib.rs", 13),
    ("reload.rs", 12),
    ("front", 11),
    ("pipeline", 10),
    ("state.rs", 9),
    ("upstream", 8),
    ("login", 7),
    ("auth", 6),
    ("session", 6),
    ("config", 5),
    ("policy", 4),
    ("runtime", 4),
    ("observe", 3),
    ("error.rs", 2),
];

/// The folder or root file a source file belongs to.
fn group(file: &str) -> &str {
    file.split('/').next().unwrap_or(file)
}

fn rank(file: &str) -> Option<u8> {
    LAYERS.iter().find(|(g, _)| *g == group(file)).map(|(_, r)| *r)
}

// ------------------------------------------------------------------ lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path, // `::`
    Open,
    Close,
    Comma,
    Semi,
    Star,
    Other,
}

/// Tokens of a Rust file with comments, strings and chars dropped: enough
/// to read paths, `use` trees and inline `mod x { }` blocks.
fn lex(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'r' && (b.get(i + 1) == Some(&b'"') || (b.get(i + 1) == Some(&b'#') && matches!(b.get(i + 2), Some(b'"' | b'#')))) {
            // Raw string: r"..", r#".."#, ...
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && b[j + 1..].iter().take(hashes).filter(|&&h| h == b'#').count() == hashes {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else {
                let ch_len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + 1 + ch_len) == Some(&b'\'') {
                    i += 2 + ch_len;
                } else {
                    i += 1;
                }
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[s..i].to_string()));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push(Tok::Path);
            i += 2;
        } else {
            out.push(match c {
                b'{' => Tok::Open,
                b'}' => Tok::Close,
                b',' => Tok::Comma,
                b';' => Tok::Semi,
                b'*' => Tok::Star,
                _ => Tok::Other,
            });
            i += 1;
        }
    }
    out
}

// ------------------------------------------------------------------ paths

/// Expands one `use` tree starting at `toks[*i]` into full paths.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(s)) if s == "as" => {
                *i += 2;
                break;
            }
            Some(Tok::Ident(s)) => {
                // `self` inside braces names the prefix itself.
                if s != "self" || path.is_empty() {
                    path.push(s.clone());
                }
                *i += 1;
            }
            Some(Tok::Path) => *i += 1,
            Some(Tok::Star) => {
                *i += 1;
                break;
            }
            Some(Tok::Open) => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        Some(Tok::Close) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Comma) => *i += 1,
                        None => return,
                        _ => use_tree(toks, i, &path, out),
                    }
                }
            }
            _ => break,
        }
    }
    out.push(path);
}

/// Every path a file names, each with the inline modules (`mod tests { }`)
/// it sits in.
fn paths(toks: &[Tok]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) = (toks.get(i + 1), toks.get(i + 2)) {
                    inline.push((name.clone(), depth));
                    i += 2;
                    continue;
                }
            }
            Tok::Ident(k) if k == "use" => {
                let mut found = Vec::new();
                i += 1;
                use_tree(toks, &mut i, &[], &mut found);
                let here: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                out.extend(found.into_iter().map(|p| (p, here.clone())));
                continue;
            }
            // Any `a::b` chain: `crate::`, `super::` and `self::` ones, and
            // relative ones (`cache::TokenCache` in `auth/mod.rs`), which
            // `build` keeps only when they start with a child module.
            Tok::Ident(k) if toks.get(i + 1) == Some(&Tok::Path) => {
                let preceded_by_path = i > 0 && toks[i - 1] == Tok::Path;
                if !preceded_by_path {
                    let mut p = vec![k.clone()];
                    let mut j = i + 1;
                    while toks.get(j) == Some(&Tok::Path) {
                        match toks.get(j + 1) {
                            Some(Tok::Ident(s)) => p.push(s.clone()),
                            _ => break,
                        }
                        j += 2;
                    }
                    let here: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                    out.push((p, here));
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The module path of a file under `src/`: `front/conn.rs` is
/// `front::conn`, `auth/mod.rs` is `auth`, `lib.rs` the crate root.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

// ------------------------------------------------------------------ graph

struct Graph {
    files: Vec<String>,
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn rust_files(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { panic!("cannot read {}", dir.display()) };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            // Binaries are not part of the library's graph.
            if p.file_name().is_some_and(|n| n != "bin") {
                rust_files(&p, root, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            if rel != "main.rs" {
                out.push(rel);
            }
        }
    }
}

fn build(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, src, &mut files);
    files.sort();
    let by_module: BTreeMap<Vec<String>, String> = files.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(src.join(f)).unwrap_or_default();
        let me = module_of(f);
        for (p, inline) in paths(&lex(&text)) {
            let mut base: Vec<String> = me.iter().chain(inline.iter()).cloned().collect();
            let mut rest = p.as_slice();
            match rest.first().map(String::as_str) {
                Some("crate") => {
                    base.clear();
                    rest = &rest[1..];
                }
                Some("self") => rest = &rest[1..],
                Some("super") => {
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                }
                Some(first) => {
                    let mut child = base.clone();
                    child.push(first.to_string());
                    if !by_module.contains_key(&child) {
                        continue; // another crate, a type, a variant
                    }
                }
                None => continue,
            }
            let full: Vec<String> = base.into_iter().chain(rest.iter().cloned()).collect();
            // The longest prefix that is a file is the file depended on.
            let target = (0..=full.len()).rev().find_map(|n| by_module.get(&full[..n]));
            if let Some(t) = target.filter(|t| *t != f) {
                edges.entry(f.clone()).or_default().insert(t.clone());
            }
        }
    }
    Graph { files, edges }
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for f in &g.files {
        if !t.index.contains_key(f.as_str()) {
            visit(&mut t, f);
        }
    }
    t.out
}

/// Edges that go up the layers, or sideways between two folders.
fn violations(g: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for (from, tos) in &g.edges {
        for to in tos {
            if group(from) == group(to) {
                continue;
            }
            match (rank(from), rank(to)) {
                (Some(a), Some(b)) if a > b => {}
                (Some(_), Some(_)) => out.push(format!("{from} -> {to}")),
                _ => out.push(format!("{from} -> {to} (a folder with no layer in LAYERS)")),
            }
        }
    }
    out
}

fn report(g: &Graph) -> (usize, Vec<Vec<String>>) {
    let mut per_group: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &g.files {
        *per_group.entry(group(f)).or_default() += 1;
    }
    let n_edges: usize = g.edges.values().map(BTreeSet::len).sum();
    let cyc = cycles(g);
    println!("files: {}", g.files.len());
    for (grp, n) in &per_group {
        println!("  {grp:<12} {n}");
    }
    println!("import edges (file -> file): {n_edges}");
    println!("import cycles: {} {:?}", cyc.len(), cyc.iter().map(Vec::len).collect::<Vec<_>>());
    for c in &cyc {
        println!("  {}", c.join(" "));
    }
    if std::env::var_os("AGW_ARCH_EDGES").is_some() {
        for (from, tos) in &g.edges {
            println!("{from} -> {}", tos.iter().cloned().collect::<Vec<_>>().join(" "));
        }
    }
    (n_edges, cyc)
}

fn src_dir() -> PathBuf {
    match std::env::var_os("AGW_ARCH_SRC") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
}

#[test]
fn the_import_graph_has_no_cycle_and_points_down_the_layers() {
    let g = build(&src_dir());
    let (edges, cyc) = report(&g);
    if std::env::var_os("AGW_ARCH_SRC").is_some() {
        return;
    }
    assert!(g.files.len() > 30 && edges > 50, "the walk found too little: {} files, {edges} edges", g.files.len());
    assert!(cyc.is_empty(), "import cycles: {cyc:?}");
    let bad = violations(&g);
    assert!(bad.is_empty(), "imports against the layers of docs/ARCHITECTURE.md:\n  {}", bad.join("\n  "));
}

#[test]
fn every_folder_has_a_layer() {
    let g = build(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let missing: BTreeSet<&str> = g.files.iter().map(|f| group(f)).filter(|grp| rank(grp).is_none()).collect();
    assert!(missing.is_empty(), "add these to LAYERS and docs/ARCHITECTURE.md: {missing:?}");
}

#[test]
fn the_reader_resolves_what_rust_resolves() {
    let toks = lex(r#"
        use crate::policy::{routes::Route, path::{self, NormalPath}};
        use super::keys::KeySet as K;
        // use crate::state::Gateway;  (a comment)
        let s = "crate::front::conn";
        let c = '"'; let l: &'static str = "";
        fn f() { crate::observe::metrics::metrics(); jwt::parse(t); }
        #[cfg(test)]
        mod tests { use super::*; use crate::error::GatewayError; }
        "#);
    let got: Vec<(String, String)> = paths(&toks).into_iter().map(|(p, m)| (p.join("::"), m.join("::"))).collect();
    let want = [
        ("crate::policy::routes::Route", ""),
        ("crate::policy::path", ""),
        ("crate::policy::path::NormalPath", ""),
        ("super::keys::KeySet", ""),
        ("crate::observe::metrics::metrics", ""),
        ("jwt::parse", ""),
        ("super", "tests"),
        ("crate::error::GatewayError", "tests"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn the_importer_has_no_import_cycle() {
    let g = build(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/authgear-import/src"));
    assert!(g.files.len() > 10, "the walk found {} files", g.files.len());
    let cyc = cycles(&g);
    assert!(cyc.is_empty(), "import cycles in the importer: {cyc:?}");
}
