//! Link-time layout of the release binary (x86_64 Linux with glibc only).
//!
//! The kernel maps a program's code in large pieces around each page it
//! touches (fault-around, and whole page-cache folios), so code that runs at
//! start-up and on the request path, scattered through 11 MB of text, kept
//! about 7 MB of the binary resident in an idle gateway. Two linker options
//! fix most of that (bench/README.md, "Idle memory"):
//! - `--symbol-ordering-file=linker/text-order.txt`: the functions a
//!   profiled start-up and first requests ran (made by `bench/text_order.sh`)
//!   are laid out first, together. A name the build no longer has (a changed
//!   signature, a new compiler or dependency, or other dependency features:
//!   the list matches the gateway built alone, as `cargo run --release`,
//!   `cargo build --release --bin authgear-gateway` and the Dockerfile build
//!   it) is skipped, so a stale list only costs memory, never correctness.
//! - `-z pack-relative-relocs` (DT_RELR, glibc 2.36+): the table of
//!   relocations the loader reads at start-up shrinks from ~630 KB to ~10 KB.
//!
//! Both need the LLVM linker rustc uses by default on this target since Rust
//! 1.90; other targets, older compilers, debug builds, a configured linker or
//! `AUTHGEAR_GATEWAY_PLAIN_LINK=1` get the plain link.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=linker/text-order.txt");
    println!("cargo:rerun-if-env-changed=AUTHGEAR_GATEWAY_PLAIN_LINK");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if !wants_ordered_link() {
        return;
    }
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("linker/text-order.txt");
    if !order.is_file() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    if glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// A release build for x86_64 Linux/glibc, linked by rustc's own lld.
fn wants_ordered_link() -> bool {
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("PROFILE") != "release" || env::var_os("AUTHGEAR_GATEWAY_PLAIN_LINK").is_some_and(|v| v != "0") {
        return false;
    }
    if var("TARGET") != "x86_64-unknown-linux-gnu" || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    // Flags that pick another linker or linker flavour: leave the link alone.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    rustc_minor().is_some_and(|m| m >= 90)
}

/// The minor version of the compiler cargo runs (`1.N.x`).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("-V").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}

/// Whether the build host's glibc (the one the binary will load, for a
/// native build) reads DT_RELR relocations.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.split_whitespace().nth(1) else { return false };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}
