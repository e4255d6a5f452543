//! A QEMU that sees only the files of its own Debian package and the packages it depends on.
//!
//! QEMU finds its ROMs, firmware and modules in directories relative to its executable
//! (`/usr/bin/../share/qemu`, …); `-L` only adds directories in front of those, so it cannot
//! hide a file. A copy of the executable in a directory of our own therefore looks up every
//! data file under that directory instead, and there we put exactly the files that
//! `qemu-system-arm` and its `Depends:` install — what `apt-get install --no-install-recommends
//! qemu-system-arm` brings to a fresh machine. Files of recommended packages such as
//! `ipxe-qemu` (the network cards' option ROMs) are absent even when this machine has them, so
//! a command line that needs one fails in `cargo xtask test` as it would for a new user, and
//! QEMU's message names the missing file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian package that provides [`crate::QEMU`].
pub const PACKAGE: &str = "qemu-system-arm";

/// The directory trees of an installed QEMU that it looks up relative to its executable.
const DATA_PREFIXES: [&str; 2] = ["/usr/share/", "/usr/lib/"];

/// Builds the package-only QEMU under `dir` and returns the path of its executable, or
/// `Ok(None)` on a system without dpkg (nothing to compare against there). The copy is made
/// afresh each time, so it follows the installed QEMU.
pub fn prepare(dir: &Path) -> Result<Option<PathBuf>, String> {
    if Command::new("dpkg-query").arg("--version").output().is_err() {
        return Ok(None);
    }
    let mut packages = vec![PACKAGE.to_string()];
    packages.extend(dependencies(&query(&["-W", "-f=${Depends}", PACKAGE])?));
    let mut files = Vec::new();
    for package in &packages {
        // A dependency that is a library or a virtual package may list nothing of interest.
        if let Ok(list) = query(&["-L", package]) {
            files.extend(list.lines().filter(|path| is_data_file(path)).map(PathBuf::from));
        }
    }

    let _ = fs::remove_dir_all(dir);
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(|e| format!("creating {}: {e}", bin.display()))?;
    let installed = which(crate::QEMU)?;
    let executable = bin.join(crate::QEMU);
    // The executable must be a real file here (a symbolic link would lead QEMU back to the
    // installed directories): a hard link where the file system allows, else a copy.
    if fs::hard_link(&installed, &executable).is_err() {
        fs::copy(&installed, &executable)
            .map_err(|e| format!("copying {} to {}: {e}", installed.display(), executable.display()))?;
    }
    for file in files.iter().filter(|file| file.is_file()) {
        let relative = file.strip_prefix("/usr").expect("is_data_file checked the prefix");
        let link = dir.join(relative);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::os::unix::fs::symlink(file, &link)
            .map_err(|e| format!("linking {} to {}: {e}", link.display(), file.display()))?;
    }
    Ok(Some(executable))
}

/// Whether `path` is a file QEMU may look up relative to its executable.
fn is_data_file(path: &str) -> bool {
    DATA_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) && path.contains("/qemu/")
}

/// The package names of a dpkg `Depends:` field (`a (>= 1), b | c` → a, b, c).
fn dependencies(field: &str) -> Vec<String> {
    field
        .split([',', '|'])
        .filter_map(|item| item.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

fn query(args: &[&str]) -> Result<String, String> {
    let output =
        Command::new("dpkg-query").args(args).output().map_err(|e| format!("running dpkg-query: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`dpkg-query {}` failed: {} (is {PACKAGE} installed from Debian's packages?)",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The installed executable `program` from the PATH, with symbolic links resolved.
fn which(program: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .and_then(|found| fs::canonicalize(found).ok())
        .ok_or_else(|| format!("{program} is not on the PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_read_without_versions_alternatives_or_architectures() {
        assert_eq!(
            dependencies("libc6 (>= 2.34), qemu-system-common (= 1:7.2), libfoo1 | libbar1, zlib1g:amd64"),
            ["libc6", "qemu-system-common", "libfoo1", "libbar1", "zlib1g"]
        );
        assert!(dependencies("").is_empty());
    }

    #[test]
    fn data_files_are_those_qemu_looks_up_relative_to_itself() {
        assert!(is_data_file("/usr/share/qemu/keymaps/en-us"));
        assert!(is_data_file("/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so"));
        assert!(!is_data_file("/usr/share/doc/qemu-system-arm/copyright"));
        assert!(!is_data_file("/usr/bin/qemu-system-arm"));
    }
}
