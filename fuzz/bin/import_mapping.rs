//! AFL entry point for the `import_mapping` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::import_mapping(data));
}
