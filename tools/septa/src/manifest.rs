//! `app.toml`: reading an app's manifest and checking it before it is packed.
//!
//! Unknown fields and malformed values are refused with a message naming the file, the
//! field and the fix; the same rules the kernel applies (`Manifest::validate`) run here
//! first, so a bad manifest fails the build rather than the boot.

use anyhow::{Context, Result, bail};
use septa_abi::app::{self, Manifest, Restart};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    app: AppSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AppSection {
    name: String,
    component_id: String,
    version: u32,
    priority: u8,
    memory_kib: u32,
    restart: RestartPolicy,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RestartPolicy {
    Always,
    Never,
    OnFailure,
}

/// A manifest read from `app.toml`, owning its strings.
#[derive(Clone, Debug)]
pub struct AppManifest {
    pub name: String,
    pub component_id: [u8; 16],
    pub version: u32,
    pub priority: u8,
    pub memory_kib: u32,
    pub restart: Restart,
}

impl AppManifest {
    /// The manifest as the device sees it.
    pub fn to_abi(&self) -> Manifest<'_> {
        Manifest {
            name: &self.name,
            component_id: self.component_id,
            version: self.version,
            priority: self.priority,
            memory_kib: self.memory_kib,
            restart: self.restart,
        }
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<AppManifest> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn parse(text: &str) -> Result<AppManifest> {
        let file: File = toml::from_str(text)?;
        let app = file.app;
        let component_id = parse_uuid(&app.component_id).with_context(|| {
            format!("[app] component-id {:?}: expected a UUID like \"6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a4b71\"", app.component_id)
        })?;
        let manifest = AppManifest {
            name: app.name,
            component_id,
            version: app.version,
            priority: app.priority,
            memory_kib: app.memory_kib,
            restart: match app.restart {
                RestartPolicy::Always => Restart::Always,
                RestartPolicy::Never => Restart::Never,
                RestartPolicy::OnFailure => Restart::OnFailure,
            },
        };
        if let Err(error) = manifest.to_abi().validate() {
            let field = match error {
                app::Error::BadName => "name",
                app::Error::BadPriority(_) => "priority",
                app::Error::BadMemory(_) => "memory-kib",
                _ => "app",
            };
            bail!("app {:?}: [app] {field}: {error}", manifest.name);
        }
        Ok(manifest)
    }
}

/// Parses the canonical 8-4-4-4-12 hex form of a UUID.
pub fn parse_uuid(text: &str) -> Result<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        bail!("not in 8-4-4-4-12 form");
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).context("not hexadecimal")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[app]
name = "blinky"
component-id = "6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a4b71"
version = 1
priority = 3
memory-kib = 64
restart = "always"
"#;

    #[test]
    fn a_good_manifest_parses() {
        let m = AppManifest::parse(GOOD).unwrap();
        assert_eq!(m.name, "blinky");
        assert_eq!(m.component_id[0], 0x6b);
        assert_eq!(m.component_id[15], 0x71);
        assert_eq!(m.restart, Restart::Always);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = AppManifest::parse(&GOOD.replace("version = 1", "version = 1\ncolour = 3"))
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("unknown field `colour`"),
            "{error:#}"
        );
    }

    #[test]
    fn malformed_uuid_names_the_field() {
        let error = AppManifest::parse(&GOOD.replace("6b1c5d6e-8a57", "6b1c5d6e8a57")).unwrap_err();
        assert!(format!("{error:#}").contains("component-id"), "{error:#}");
    }

    #[test]
    fn out_of_range_values_name_app_and_field() {
        let error = AppManifest::parse(&GOOD.replace("priority = 3", "priority = 9")).unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("\"blinky\"") && text.contains("priority"),
            "{text}"
        );
        let error =
            AppManifest::parse(&GOOD.replace("memory-kib = 64", "memory-kib = 1")).unwrap_err();
        assert!(format!("{error:#}").contains("memory-kib"), "{error:#}");
    }
}
