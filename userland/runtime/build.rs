//! Puts the app linker script (`userland/app.ld`) on the linker's search path as
//! `septa-app.ld`, for every app that depends on the runtime: in-tree apps name it in their
//! shared build script, apps outside the tree in their `.cargo/config.toml`
//! (`-C link-arg=-Tsepta-app.ld`), so both link with the same layout.

use std::path::{Path, PathBuf};

fn main() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../app.ld");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy(&script, out.join("septa-app.ld")).expect("copying userland/app.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-search={}", out.display());
}
