//! Network capabilities: the destinations a manifest may name and the policy table the
//! build composes from them for the network service.
//!
//! A manifest lists `connect = ["name:port", …]` and `listen = [port, …]`. Names resolve through [`HOSTS`], the
//! image's fixed name table (the device has no DNS); a dotted IPv4 address is accepted as
//! well. The build collects every app's destinations, keyed by the app's component id, into
//! one [`Policy`] that it writes into the network service's own signed package. The service
//! trusts only that table and the IPC badge the kernel attaches to each call — never what a
//! client says about itself.

use serde::{Deserialize, Serialize};

/// The most destinations one manifest may name.
pub const MAX_CONNECT: usize = 8;
/// The most entries in one image's policy (all apps together).
pub const MAX_POLICY_ENTRIES: usize = 32;
/// The most ports one manifest may listen on.
pub const MAX_LISTEN: usize = 4;
/// The most listening ports in one image (all apps together).
pub const MAX_POLICY_LISTENS: usize = 8;
/// The bytes reserved in the network service for its encoded policy (`[len: u16 LE][postcard]`).
pub const POLICY_SPACE: usize = 1024;
/// The endpoint the network service serves.
pub const SERVICE_ENDPOINT: &str = "net";
/// The board device of the network card; the app that holds it is the network driver.
pub const NIC_DEVICE: &str = "virtio-net";

/// A name the image resolves without DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: &'static str,
    pub address: [u8; 4],
}

/// The image's name table. `devhost` is the development host as QEMU's user network shows
/// it: `10.0.2.100`, where each named forward (`guestfwd`) leads to a relay on the host's
/// loopback.
pub const HOSTS: &[Host] = &[Host { name: "devhost", address: [10, 0, 2, 100] }];

/// A destination as a manifest names it: `host:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination<'a> {
    pub host: &'a str,
    pub address: [u8; 4],
    pub port: u16,
}

/// Why a destination was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationError {
    /// Not of the form `host:port`.
    Malformed,
    /// The port is not a number from 1 to 65535.
    BadPort,
    /// The host is neither in [`HOSTS`] nor an IPv4 address.
    UnknownHost,
}

impl core::fmt::Display for DestinationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DestinationError::Malformed => write!(f, "expected \"host:port\""),
            DestinationError::BadPort => write!(f, "the port must be a number from 1 to 65535"),
            DestinationError::UnknownHost => {
                write!(f, "the host must be an IPv4 address or a name the image knows (")?;
                for (i, host) in HOSTS.iter().enumerate() {
                    write!(f, "{}{}", if i == 0 { "" } else { ", " }, host.name)?;
                }
                write!(f, ")")
            }
        }
    }
}

impl<'a> Destination<'a> {
    /// Parses and resolves `host:port`.
    pub fn parse(text: &'a str) -> Result<Destination<'a>, DestinationError> {
        let (host, port) = text.rsplit_once(':').ok_or(DestinationError::Malformed)?;
        if host.is_empty() || port.is_empty() {
            return Err(DestinationError::Malformed);
        }
        let port =
            parse_decimal(port).filter(|p| (1..=65535).contains(p)).ok_or(DestinationError::BadPort)?;
        let address = resolve(host).ok_or(DestinationError::UnknownHost)?;
        Ok(Destination { host, address, port: port as u16 })
    }
}

/// The address of `host`: a name from [`HOSTS`] or a dotted IPv4 address.
pub fn resolve(host: &str) -> Option<[u8; 4]> {
    if let Some(known) = HOSTS.iter().find(|h| h.name == host) {
        return Some(known.address);
    }
    let mut address = [0u8; 4];
    let mut parts = host.split('.');
    for byte in address.iter_mut() {
        *byte = parse_decimal(parts.next()?).filter(|&v| v <= 255)? as u8;
    }
    parts.next().is_none().then_some(address)
}

/// A decimal number of at most 5 digits.
fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One permitted destination of one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The app's component id: the badge its IPC calls carry.
    pub component: [u8; 16],
    pub address: [u8; 4],
    pub port: u16,
}

/// One port one app may listen on (each port belongs to at most one app).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenGrant {
    pub component: [u8; 16],
    pub port: u16,
}

/// The network service's policy, composed by the build from the image's manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The component id of the network driver (the app holding [`NIC_DEVICE`]).
    pub driver: Option<[u8; 16]>,
    pub grants: heapless::Vec<Grant, MAX_POLICY_ENTRIES>,
    pub listens: heapless::Vec<ListenGrant, MAX_POLICY_LISTENS>,
}

/// Why a policy blob was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// The length prefix points outside the reserved space.
    Truncated,
    Undecodable,
}

impl Policy {
    /// Whether `component` may connect to `address:port`.
    pub fn allows(&self, component: &[u8; 16], address: [u8; 4], port: u16) -> bool {
        self.grants.iter().any(|g| g.component == *component && g.address == address && g.port == port)
    }

    /// Whether `component` may listen on `port`.
    pub fn allows_listen(&self, component: &[u8; 16], port: u16) -> bool {
        self.listens.iter().any(|l| l.component == *component && l.port == port)
    }

    /// Whether `component` has any network capability at all.
    pub fn knows(&self, component: &[u8; 16]) -> bool {
        self.grants.iter().any(|g| g.component == *component)
            || self.listens.iter().any(|l| l.component == *component)
    }

    pub fn is_driver(&self, component: &[u8; 16]) -> bool {
        self.driver.as_ref() == Some(component)
    }

    /// Reads the policy from the service's reserved space: `[len: u16 LE][postcard]`.
    pub fn decode(space: &[u8]) -> Result<Policy, PolicyError> {
        let len = space.get(..2).ok_or(PolicyError::Truncated)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let bytes = space.get(2..2 + len).ok_or(PolicyError::Truncated)?;
        let (policy, rest) = postcard::take_from_bytes(bytes).map_err(|_| PolicyError::Undecodable)?;
        if !rest.is_empty() {
            return Err(PolicyError::Undecodable);
        }
        Ok(policy)
    }

    /// Writes the policy for [`Policy::decode`], filling exactly [`POLICY_SPACE`] bytes.
    pub fn encode(&self) -> Option<[u8; POLICY_SPACE]> {
        let mut space = [0u8; POLICY_SPACE];
        let len = postcard::to_slice(self, &mut space[2..]).ok()?.len();
        space[..2].copy_from_slice(&(len as u16).to_le_bytes());
        Some(space)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_resolve() {
        let d = Destination::parse("devhost:7").unwrap();
        assert_eq!((d.host, d.address, d.port), ("devhost", [10, 0, 2, 100], 7));
        let d = Destination::parse("10.0.2.2:65535").unwrap();
        assert_eq!((d.address, d.port), ([10, 0, 2, 2], 65535));
    }

    #[test]
    fn malformed_destinations_are_refused() {
        use DestinationError::*;
        for (text, error) in [
            ("devhost", Malformed),
            (":7", Malformed),
            ("devhost:", Malformed),
            ("devhost:0", BadPort),
            ("devhost:65536", BadPort),
            ("devhost:-1", BadPort),
            ("devhost:123456", BadPort),
            ("devhost:7x", BadPort),
            ("example.com:443", UnknownHost),
            ("10.0.2:7", UnknownHost),
            ("10.0.2.256:7", UnknownHost),
            ("10.0.2.1.1:7", UnknownHost),
        ] {
            assert_eq!(Destination::parse(text), Err(error), "{text}");
        }
    }

    fn policy() -> Policy {
        let mut grants = heapless::Vec::new();
        grants.push(Grant { component: [1; 16], address: [10, 0, 2, 100], port: 7 }).unwrap();
        grants.push(Grant { component: [2; 16], address: [10, 0, 2, 100], port: 9 }).unwrap();
        let mut listens = heapless::Vec::new();
        listens.push(ListenGrant { component: [5; 16], port: 8080 }).unwrap();
        Policy { driver: Some([3; 16]), grants, listens }
    }

    #[test]
    fn the_policy_allows_only_the_exact_grants() {
        let p = policy();
        assert!(p.allows(&[1; 16], [10, 0, 2, 100], 7));
        assert!(!p.allows(&[1; 16], [10, 0, 2, 100], 9), "another app's port");
        assert!(!p.allows(&[1; 16], [10, 0, 2, 2], 7), "another address");
        assert!(!p.allows(&[4; 16], [10, 0, 2, 100], 7), "unknown app");
        assert!(p.knows(&[2; 16]) && !p.knows(&[3; 16]));
        assert!(p.is_driver(&[3; 16]) && !p.is_driver(&[1; 16]));
    }

    #[test]
    fn the_policy_allows_listening_only_on_the_apps_own_ports() {
        let p = policy();
        assert!(p.allows_listen(&[5; 16], 8080));
        assert!(!p.allows_listen(&[5; 16], 8081), "a port not granted");
        assert!(!p.allows_listen(&[1; 16], 8080), "another app's port");
        assert!(!p.allows_listen(&[1; 16], 7), "a connect grant is no listen grant");
        assert!(p.knows(&[5; 16]), "a listener is a network app");
    }

    #[test]
    fn a_full_policy_fits_its_space() {
        let mut p = Policy { driver: Some([0xff; 16]), ..Policy::default() };
        for i in 0..MAX_POLICY_ENTRIES {
            p.grants.push(Grant { component: [i as u8; 16], address: [255; 4], port: 65535 }).unwrap();
        }
        for i in 0..MAX_POLICY_LISTENS {
            p.listens.push(ListenGrant { component: [i as u8; 16], port: 65535 }).unwrap();
        }
        assert_eq!(Policy::decode(&p.encode().expect("fits")), Ok(p));
    }

    #[test]
    fn the_policy_round_trips_and_garbage_is_refused() {
        let space = policy().encode().unwrap();
        assert_eq!(Policy::decode(&space), Ok(policy()));
        assert_eq!(Policy::decode(&[0u8; POLICY_SPACE]), Err(PolicyError::Undecodable), "empty space");
        let mut bad = space;
        bad[..2].copy_from_slice(&2000u16.to_le_bytes());
        assert_eq!(Policy::decode(&bad), Err(PolicyError::Truncated));
        assert_eq!(Policy::decode(&[1]), Err(PolicyError::Truncated));
    }
}
