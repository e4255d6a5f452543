//! The network service's policy: composed from the manifests of one image and written into
//! the service's ELF before it is signed.
//!
//! The service reserves [`POLICY_SPACE`] bytes under the symbol [`POLICY_SYMBOL`]; the build
//! fills them with the [`Policy`] of the image it packs, so the table the service enforces is
//! covered by the service's own signature and cannot come from a client.

use crate::manifest::AppManifest;
use anyhow::{Context, Result, bail};
use object::read::elf::{ElfFile32, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};
use septa_abi::net::{Destination, Grant, ListenGrant, NIC_DEVICE, POLICY_SPACE, Policy};

/// The symbol of the service's reserved policy space.
pub const POLICY_SYMBOL: &str = "SEPTA_NET_POLICY";

/// Every app's destinations and listening ports, by component id, and the driver's identity.
pub fn compose(apps: &[AppManifest]) -> Result<Policy> {
    let mut policy = Policy::default();
    for app in apps {
        if app.devices.iter().any(|d| d == NIC_DEVICE) {
            policy.driver = Some(app.component_id);
        }
        for text in &app.connect {
            let destination = Destination::parse(text)
                .map_err(|e| anyhow::anyhow!("app {:?}: [capabilities] connect: {text:?}: {e}", app.name))?;
            let grant =
                Grant { component: app.component_id, address: destination.address, port: destination.port };
            if policy.grants.contains(&grant) {
                bail!("app {:?}: [capabilities] connect: {text:?} names a destination twice", app.name);
            }
            if policy.grants.push(grant).is_err() {
                bail!(
                    "app {:?}: [capabilities] connect: the image's apps name more than {} destinations together",
                    app.name,
                    septa_abi::net::MAX_POLICY_ENTRIES
                );
            }
        }
        for &port in &app.listen {
            if let Some(other) = policy.listens.iter().find(|l| l.port == port) {
                let owner = apps.iter().find(|a| a.component_id == other.component).map_or("", |a| &a.name);
                bail!("app {:?}: [capabilities] listen: port {port} is already {owner:?}'s", app.name);
            }
            if policy.listens.push(ListenGrant { component: app.component_id, port }).is_err() {
                bail!(
                    "app {:?}: [capabilities] listen: the image's apps listen on more than {} ports together",
                    app.name,
                    septa_abi::net::MAX_POLICY_LISTENS
                );
            }
        }
    }
    Ok(policy)
}

/// Overwrites the policy space in `elf` (if it has one) with `policy`. Returns whether the
/// ELF had the symbol.
pub fn patch(elf: &mut [u8], policy: &Policy) -> Result<bool> {
    let file = ElfFile32::<Endianness>::parse(&*elf).context("not a 32-bit ELF file")?;
    let Some(symbol) = file.symbols().find(|s| s.name() == Ok(POLICY_SYMBOL)) else {
        return Ok(false);
    };
    if symbol.size() as usize != POLICY_SPACE {
        bail!("{POLICY_SYMBOL} is {} bytes, expected {POLICY_SPACE}", symbol.size());
    }
    let address = symbol.address() as u32;
    let endian = file.endian();
    let offset = file
        .elf_program_headers()
        .iter()
        .find_map(|h| {
            let start = h.p_vaddr(endian);
            let in_file = address >= start && address + POLICY_SPACE as u32 <= start + h.p_filesz(endian);
            in_file.then(|| (h.p_offset(endian) + address - start) as usize)
        })
        .context("the policy space is not in a loaded segment")?;
    let bytes = policy.encode().context("the policy does not fit its reserved space")?;
    elf[offset..offset + POLICY_SPACE].copy_from_slice(&bytes);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, id: u8, caps: &str) -> AppManifest {
        let text = format!(
            "[app]\nname = \"{name}\"\ncomponent-id = \"6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a4b{id:02x}\"\n\
             version = 1\npriority = 3\nmemory-kib = 64\nrestart = \"never\"\n[capabilities]\n{caps}"
        );
        AppManifest::parse(&text).unwrap()
    }

    #[test]
    fn the_policy_holds_each_apps_destinations_and_the_driver() {
        let apps = [
            app("a", 1, "call = [\"net\"]\nconnect = [\"devhost:7\"]"),
            app("b", 2, "call = [\"net\"]\nconnect = [\"devhost:9\", \"10.0.2.2:80\"]"),
            app("nic", 3, "devices = [\"virtio-net\"]\ndma-kib = 32"),
            app("none", 4, ""),
        ];
        let policy = compose(&apps).unwrap();
        let id = |n: u8| apps[n as usize - 1].component_id;
        assert!(policy.allows(&id(1), [10, 0, 2, 100], 7));
        assert!(!policy.allows(&id(1), [10, 0, 2, 100], 9));
        assert!(policy.allows(&id(2), [10, 0, 2, 2], 80));
        assert!(!policy.knows(&id(4)));
        assert_eq!(policy.driver, Some(id(3)));
        assert_eq!(policy.grants.len(), 3);
    }

    #[test]
    fn listening_ports_enter_the_policy_once() {
        let apps = [
            app("web", 1, "call = [\"net\"]\nlisten = [8080]"),
            app("admin", 2, "call = [\"net\"]\nlisten = [23]\nconnect = [\"devhost:7\"]"),
        ];
        let policy = compose(&apps).unwrap();
        assert!(policy.allows_listen(&apps[0].component_id, 8080));
        assert!(policy.allows_listen(&apps[1].component_id, 23));
        assert!(!policy.allows_listen(&apps[1].component_id, 8080));
        let taken = [apps[0].clone(), app("thief", 3, "call = [\"net\"]\nlisten = [8080]")];
        let error = format!("{:#}", compose(&taken).unwrap_err());
        assert!(
            error.contains("app \"thief\": [capabilities] listen: port 8080 is already \"web\"'s"),
            "{error}"
        );
    }

    #[test]
    fn an_elf_without_the_symbol_is_left_alone() {
        let mut not_elf = vec![0u8; 64];
        assert!(patch(&mut not_elf, &Policy::default()).is_err());
    }
}
