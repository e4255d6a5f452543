//! Capability tables: what a process may do, as a small table of handles.
//!
//! The kernel builds each process's table from its validated manifest; nothing is granted
//! by default and the process cannot add to it. A handle is the index of an entry. Every
//! syscall that reaches another process, a device or the monitor looks its handle up here
//! with the kind it needs: an out-of-range index, an empty entry or an entry of another
//! kind is `EACCES`, and the lookup changes nothing.

use septa_syscalls::Error;

/// Entries per process.
pub const CAPACITY: usize = 16;

/// A capability: a kernel object and the right to use it one way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// May call (and notify) the server of this endpoint.
    Call { endpoint: u8 },
    /// May receive and reply on this endpoint.
    Serve { endpoint: u8 },
    /// May map this board device and receive and acknowledge its interrupt.
    Device { device: u8 },
    /// May drive these GPIO pins (a bit set).
    Gpio { pins: u32 },
    /// May use these security-monitor services (a bit set).
    Monitor { services: u32 },
}

/// The kinds `lookup` can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Call,
    Serve,
    Device,
    Gpio,
    Monitor,
}

impl Kind {
    pub fn from_u32(value: u32) -> Option<Kind> {
        Some(match value {
            0 => Kind::Call,
            1 => Kind::Serve,
            2 => Kind::Device,
            3 => Kind::Gpio,
            4 => Kind::Monitor,
            _ => return None,
        })
    }
}

impl Cap {
    pub fn kind(&self) -> Kind {
        match self {
            Cap::Call { .. } => Kind::Call,
            Cap::Serve { .. } => Kind::Serve,
            Cap::Device { .. } => Kind::Device,
            Cap::Gpio { .. } => Kind::Gpio,
            Cap::Monitor { .. } => Kind::Monitor,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapTable {
    entries: [Option<Cap>; CAPACITY],
}

impl CapTable {
    pub const fn new() -> CapTable {
        CapTable { entries: [None; CAPACITY] }
    }

    /// Adds a capability; returns its handle, or `None` when the table is full.
    pub fn grant(&mut self, cap: Cap) -> Option<u32> {
        let index = self.entries.iter().position(Option::is_none)?;
        self.entries[index] = Some(cap);
        Some(index as u32)
    }

    /// The capability behind `handle`, which must be of `kind`.
    pub fn get(&self, handle: u32, kind: Kind) -> Result<Cap, Error> {
        let cap = self.entries.get(handle as usize).copied().flatten().ok_or(Error::Access)?;
        if cap.kind() == kind { Ok(cap) } else { Err(Error::Access) }
    }

    /// The handle of the first entry for which `matches` holds.
    pub fn find(&self, matches: impl Fn(&Cap) -> bool) -> Option<u32> {
        self.entries.iter().position(|e| e.as_ref().is_some_and(&matches)).map(|i| i as u32)
    }
}

/// The process the server of `endpoint` may notify as its client `badge`: a live one
/// (`processes`: number, component id, capabilities) with that component id and a call
/// capability to `endpoint`. A server can thus wake only apps whose manifests let them call
/// it, and it names them by the badge their calls carried.
pub fn client_of<'a>(
    endpoint: u8,
    badge: &[u8; 16],
    mut processes: impl Iterator<Item = (usize, [u8; 16], &'a CapTable)>,
) -> Option<usize> {
    processes
        .find(|(_, id, caps)| id == badge && caps.find(|c| *c == Cap::Call { endpoint }).is_some())
        .map(|(pid, _, _)| pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_may_notify_only_its_own_clients_by_badge() {
        let mut client = CapTable::new();
        client.grant(Cap::Call { endpoint: 2 });
        let mut other = CapTable::new();
        other.grant(Cap::Call { endpoint: 5 });
        other.grant(Cap::Serve { endpoint: 2 });
        let processes = [(3, [1; 16], &client), (4, [2; 16], &other)];
        assert_eq!(client_of(2, &[1; 16], processes.into_iter()), Some(3));
        assert_eq!(client_of(2, &[2; 16], processes.into_iter()), None, "serving is not calling");
        assert_eq!(client_of(5, &[1; 16], processes.into_iter()), None, "not a client of endpoint 5");
        assert_eq!(client_of(5, &[2; 16], processes.into_iter()), Some(4));
        assert_eq!(client_of(2, &[9; 16], processes.into_iter()), None, "unknown badge");
    }

    fn table() -> CapTable {
        let mut t = CapTable::new();
        assert_eq!(t.grant(Cap::Call { endpoint: 2 }), Some(0));
        assert_eq!(t.grant(Cap::Gpio { pins: 1 << 3 }), Some(1));
        t
    }

    #[test]
    fn lookup_checks_range_presence_and_kind() {
        let t = table();
        assert_eq!(t.get(0, Kind::Call), Ok(Cap::Call { endpoint: 2 }));
        assert_eq!(t.get(0, Kind::Serve), Err(Error::Access), "wrong kind");
        assert_eq!(t.get(5, Kind::Call), Err(Error::Access), "empty entry");
        assert_eq!(t.get(16, Kind::Call), Err(Error::Access), "out of range");
        assert_eq!(t.get(u32::MAX, Kind::Call), Err(Error::Access), "far out of range");
    }

    #[test]
    fn find_by_object() {
        let t = table();
        assert_eq!(t.find(|c| *c == Cap::Call { endpoint: 2 }), Some(0));
        assert_eq!(t.find(|c| *c == Cap::Call { endpoint: 3 }), None);
    }

    #[test]
    fn a_full_table_grants_nothing_more() {
        let mut t = CapTable::new();
        for i in 0..CAPACITY {
            assert_eq!(t.grant(Cap::Device { device: i as u8 }), Some(i as u32));
        }
        assert_eq!(t.grant(Cap::Device { device: 99 }), None);
    }

    #[test]
    fn kinds_decode() {
        assert_eq!(Kind::from_u32(2), Some(Kind::Device));
        assert_eq!(Kind::from_u32(9), None);
    }
}
