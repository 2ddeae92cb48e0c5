//! AFL entry point for the `resolver_headers` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::resolver_headers(data));
}
