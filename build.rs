//! Rebuild when the built-in pipelines or SQL change: `include_dir!` embeds them in the binary.
fn main() {
    println!("cargo:rerun-if-changed=pipelines");
    println!("cargo:rerun-if-changed=sql");
    println!("cargo:rerun-if-changed=proto");
}
