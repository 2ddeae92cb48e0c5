//! AFL entry point for the `import_reader` target (body in `targets.rs`).
fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::import_reader(data));
}
