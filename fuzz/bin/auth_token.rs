//! AFL entry point for the `auth_token` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::auth_token(data));
}
