//! The build script of apps that use `septa-tls` (`build = "../../build-tls-app.rs"`): links
//! the app like every app, and embeds the trust anchors its `app.toml` names in
//! `[tls] trust-anchors` — each a DER file of that name in the folder `SEPTA_TRUST_DIR`
//! points to (`cargo xtask` sets it) — as `septa_tls::trust_anchors!()`. The anchors thus
//! become part of the app's ELF, which is signed and measured with the image.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = dir.join("../../app.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
    let manifest = dir.join("app.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    println!("cargo:rerun-if-env-changed=SEPTA_TRUST_DIR");
    let text = std::fs::read_to_string(&manifest).expect("reading app.toml");
    let value: toml::Value = text.parse().expect("app.toml is TOML");
    let names: Vec<&str> = value
        .get("tls")
        .and_then(|t| t.get("trust-anchors"))
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let trust = std::env::var_os("SEPTA_TRUST_DIR").map(PathBuf::from);
    let mut list = String::from("[");
    for name in names {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
            "app.toml: [tls] trust-anchors: {name:?} is not a plain name"
        );
        let trust = trust.as_ref().expect("SEPTA_TRUST_DIR is not set: build apps with `cargo xtask build`");
        let file = trust.join(format!("{name}.der"));
        assert!(file.exists(), "app.toml names trust anchor {name:?}, but {} does not exist", file.display());
        println!("cargo:rerun-if-changed={}", file.display());
        write!(
            list,
            "::septa_tls::CertificateDer::from_slice(include_bytes!({:?})),",
            file.display().to_string()
        )
        .unwrap();
    }
    list.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("trust_anchors.rs"), list).expect("writing trust_anchors.rs");
}
