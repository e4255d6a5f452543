//! The build script every app shares (`build = "../../build-app.rs"`): links the app with
//! the userland linker script, which `septa-runtime` puts on the search path as
//! `septa-app.ld`, when building for the device.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tsepta-app.ld");
    }
}
