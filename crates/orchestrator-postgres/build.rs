//! Rebuilds the crate when a migration is added or changed: the migrations
//! are embedded in the binary, and cargo does not watch that folder itself.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
