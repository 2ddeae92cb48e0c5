//! AFL entry point for the `config_load` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::config_load(data));
}
