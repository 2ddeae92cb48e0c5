//! AFL entry point for the `session_cookies` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::session_cookies(data));
}
