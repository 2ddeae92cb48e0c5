//! AFL entry point for the `path_normalize` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::path_normalize(data));
}
