//! AFL entry point for the `forward_headers` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::forward_headers(data));
}
