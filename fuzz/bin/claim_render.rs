//! AFL entry point for the `claim_render` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::claim_render(data));
}
