//! Monitor services: the requests the kernel forwards for apps, and the shared page they
//! travel through.
//!
//! The kernel's `monitor_call` checks the app's `monitor` capability for the service,
//! writes the app's component id and the postcard-encoded [`Request`] into the shared page
//! (a fixed non-secure page the monitor learned at boot, never an address from the call)
//! and issues `SERVICE` with the service number, the request length and where in the page
//! the request starts. The monitor copies the request into secure memory, decodes and
//! checks it again — the variant must match the service number, every length must be in
//! bounds — and writes the response bytes back.
//!
//! A request whose last field is bytes (the data to hash or sign, an update's chunk) may
//! reach the kernel in two ranges of the app's memory: the encoding before that field, and
//! the field's bytes (its tail) where the app keeps them. The kernel writes the two one
//! after the other, so the page holds the very same encoding, and the app never copies its
//! data into a request.

use serde::{Deserialize, Serialize};

/// Shared page layout: the caller's component id, its storage quota in bytes (u32 LE),
/// the request, the response.
pub const CALLER_OFFSET: usize = 0;
pub const QUOTA_OFFSET: usize = 16;
pub const REQUEST_OFFSET: usize = 64;
/// (Room for a device certificate of `device_auth::CERTIFICATE_MAX` bytes.)
pub const REQUEST_MAX: usize = 960;
pub const RESPONSE_OFFSET: usize = 1024;
pub const RESPONSE_MAX: usize = 3072;
/// A request starts at most this many bytes before [`REQUEST_OFFSET`] ([`request_start`]).
pub const REQUEST_SLACK: usize = 3;

/// Where the kernel writes a request whose first `head_len` bytes come from one range of the
/// app and the rest (its tail) from `tail_address`: at [`REQUEST_OFFSET`] or up to
/// [`REQUEST_SLACK`] bytes before it, so that the tail lies at the same place within a word
/// in the page as in the app's memory, and its copy moves whole words.
pub fn request_start(head_len: usize, tail_address: u32) -> usize {
    let misplaced = (REQUEST_OFFSET + head_len).wrapping_sub(tail_address as usize) % 4;
    REQUEST_OFFSET - misplaced
}

/// The bytes of the shared page that hold a request of `len` bytes starting at `start`, as
/// the `SERVICE` call names them; `None` unless the kernel may have put a request there.
pub fn request_range(start: u32, len: u32) -> Option<core::ops::Range<usize>> {
    let (start, len) = (start as usize, len as usize);
    let placed = REQUEST_OFFSET.wrapping_sub(start) <= REQUEST_SLACK;
    (placed && len <= REQUEST_MAX).then_some(start..start + len)
}

/// Services, numbered as in `septa_abi::app::MONITOR_SERVICES` order where they share a
/// capability name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Service {
    Random = 0,
    Sha256 = 1,
    PublicKey = 2,
    Sign = 3,
    Verify = 4,
    Attest = 5,
    UpdateBegin = 6,
    UpdateWrite = 7,
    UpdateCommit = 8,
    StorageGet = 9,
    StoragePut = 10,
    StorageDelete = 11,
    DeviceAuthSign = 12,
    DeviceCertificate = 13,
    DeviceCertificateInstall = 14,
    WallClock = 15,
    ReportRead = 16,
}

impl Service {
    pub fn from_u32(value: u32) -> Option<Service> {
        Some(match value {
            0 => Service::Random,
            1 => Service::Sha256,
            2 => Service::PublicKey,
            3 => Service::Sign,
            4 => Service::Verify,
            5 => Service::Attest,
            6 => Service::UpdateBegin,
            7 => Service::UpdateWrite,
            8 => Service::UpdateCommit,
            9 => Service::StorageGet,
            10 => Service::StoragePut,
            11 => Service::StorageDelete,
            12 => Service::DeviceAuthSign,
            13 => Service::DeviceCertificate,
            14 => Service::DeviceCertificateInstall,
            15 => Service::WallClock,
            16 => Service::ReportRead,
            _ => return None,
        })
    }

    /// Whether the service keeps state in flash (updates, storage, device certificates): the
    /// monitor serves these from its flash owner, the others from memory.
    pub fn uses_flash(self) -> bool {
        use Service::*;
        matches!(
            self,
            UpdateBegin
                | UpdateWrite
                | UpdateCommit
                | StorageGet
                | StoragePut
                | StorageDelete
                | DeviceCertificate
                | DeviceCertificateInstall
                | ReportRead
        )
    }

    /// The bit of [`Service::capability`] in a process's set of monitor capabilities: one
    /// shifted by the name's index in `crate::app::MONITOR_SERVICES` (no string compares on
    /// the kernel's path to the monitor).
    pub fn capability_bit(self) -> u32 {
        use Service::*;
        let index = match self {
            Random => 0,
            Sha256 => 1,
            PublicKey | Sign => 2,
            Verify => 3,
            Attest => 4,
            UpdateBegin | UpdateWrite | UpdateCommit => 5,
            StorageGet | StoragePut | StorageDelete => 6,
            DeviceAuthSign | DeviceCertificate => 7,
            DeviceCertificateInstall => 8,
            WallClock => 9,
            ReportRead => 10,
        };
        1 << index
    }

    /// The manifest capability (`monitor = [...]`) a service needs.
    pub fn capability(self) -> &'static str {
        match self {
            Service::Random => "random",
            Service::Sha256 => "sha256",
            Service::PublicKey | Service::Sign => "sign",
            Service::Verify => "verify",
            Service::Attest => "attest",
            Service::UpdateBegin | Service::UpdateWrite | Service::UpdateCommit => "update",
            Service::StorageGet | Service::StoragePut | Service::StorageDelete => "storage",
            Service::DeviceAuthSign | Service::DeviceCertificate => "device-auth",
            Service::DeviceCertificateInstall => "device-cert",
            Service::WallClock => "time",
            Service::ReportRead => "reports",
        }
    }
}

/// The most random bytes one request returns.
pub const RANDOM_MAX: usize = 256;
/// The longest attestation nonce.
pub const NONCE_MAX: usize = 64;
/// The most bytes one `UpdateWrite` carries.
pub const UPDATE_CHUNK_MAX: usize = 448;
/// The longest storage key and value.
pub const KEY_MAX: usize = 32;
pub const VALUE_MAX: usize = 256;

/// Byte-slice fields are written as bytes (`serialize_with = "bytes"`): postcard encodes a
/// `&[u8]` the same way either way (its length, then the bytes), but as a sequence it would
/// push each byte through the serializer on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<'a> {
    Random {
        len: u16,
    },
    Sha256 {
        #[serde(serialize_with = "bytes")]
        data: &'a [u8],
    },
    /// The caller's own P-256 public key (SEC1 uncompressed).
    PublicKey,
    /// ECDSA P-256 over SHA-256 of `message`, with the caller's own key: 64 bytes r ‖ s.
    Sign {
        #[serde(serialize_with = "bytes")]
        message: &'a [u8],
    },
    /// One byte: 1 if `signature` is valid for `message` under `public_key`, else 0.
    Verify {
        #[serde(serialize_with = "bytes")]
        public_key: &'a [u8],
        #[serde(serialize_with = "bytes")]
        message: &'a [u8],
        #[serde(serialize_with = "bytes")]
        signature: &'a [u8],
    },
    /// An attestation token ([`crate::attest::Token`]) over `nonce`.
    Attest {
        #[serde(serialize_with = "bytes")]
        nonce: &'a [u8],
    },
    /// Starts receiving an update bundle: its header (`septa_abi::bundle`), checked now.
    UpdateBegin {
        #[serde(serialize_with = "bytes")]
        header: &'a [u8],
    },
    /// The next bytes of the bundle's slot image, at `offset` from its start (in order).
    UpdateWrite {
        offset: u32,
        #[serde(serialize_with = "bytes")]
        data: &'a [u8],
    },
    /// Checks the whole bundle, installs it into the inactive slot, marks it pending and
    /// resets the device into it. Returns only if the bundle is refused.
    UpdateCommit,
    /// The caller's value under `key`.
    StorageGet {
        #[serde(serialize_with = "bytes")]
        key: &'a [u8],
    },
    StoragePut {
        #[serde(serialize_with = "bytes")]
        key: &'a [u8],
        #[serde(serialize_with = "bytes")]
        value: &'a [u8],
    },
    StorageDelete {
        #[serde(serialize_with = "bytes")]
        key: &'a [u8],
    },
    /// The TLS 1.3 client CertificateVerify signature for `transcript_hash` with the device
    /// identity key: ECDSA P-256 over SHA-256 of the content
    /// [`crate::device_auth::client_certificate_verify`] builds, 64 bytes r ‖ s.
    DeviceAuthSign {
        transcript_hash: [u8; 32],
    },
    /// The device's certificate (DER): the newest one installed, else the factory one.
    /// `NOT_FOUND` if the device was provisioned without one.
    DeviceCertificate,
    /// Installs a newer device certificate (DER, for the device identity key); it replaces
    /// the current one from now on, across reboots.
    DeviceCertificateInstall {
        #[serde(serialize_with = "bytes")]
        certificate: &'a [u8],
    },
    /// The wall-clock time from the board's real-time clock: seconds since 1970, u64 LE.
    /// `FAILED` on a board without one.
    WallClock,
    /// A copy of the oldest signed report (`crate::report::Report`, postcard, as the ring
    /// holds it) whose batch comes after `after` — `(boot count, first sequence number)` of
    /// the last report the caller has handed on — or of the oldest report if `after` is
    /// `None`. `NOT_FOUND` when there is none. The ring itself is not changed: the caller
    /// keeps its own cursor.
    ReportRead {
        after: Option<(u32, u64)>,
    },
}

impl Request<'_> {
    pub fn service(&self) -> Service {
        match self {
            Request::Random { .. } => Service::Random,
            Request::Sha256 { .. } => Service::Sha256,
            Request::PublicKey => Service::PublicKey,
            Request::Sign { .. } => Service::Sign,
            Request::Verify { .. } => Service::Verify,
            Request::Attest { .. } => Service::Attest,
            Request::UpdateBegin { .. } => Service::UpdateBegin,
            Request::UpdateWrite { .. } => Service::UpdateWrite,
            Request::UpdateCommit => Service::UpdateCommit,
            Request::StorageGet { .. } => Service::StorageGet,
            Request::StoragePut { .. } => Service::StoragePut,
            Request::StorageDelete { .. } => Service::StorageDelete,
            Request::DeviceAuthSign { .. } => Service::DeviceAuthSign,
            Request::DeviceCertificate => Service::DeviceCertificate,
            Request::DeviceCertificateInstall { .. } => Service::DeviceCertificateInstall,
            Request::WallClock => Service::WallClock,
            Request::ReportRead { .. } => Service::ReportRead,
        }
    }
}

/// Serializes `bytes` in one piece (see [`Request`]).
fn bytes<S: serde::Serializer>(bytes: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Status codes of `SERVICE` in r0.
pub const OK: u32 = 0;
/// The request does not decode, does not match the service number, or is out of bounds.
pub const BAD_REQUEST: u32 = 1;
/// The response would not fit the caller's buffer or the shared page.
pub const TOO_LARGE: u32 = 2;
/// The service could not be performed (e.g. no entropy, a flash error).
pub const FAILED: u32 = 3;
/// No value is stored under the key.
pub const NOT_FOUND: u32 = 4;
/// The write would exceed the app's storage quota; nothing was changed.
pub const QUOTA_EXCEEDED: u32 = 5;
/// The update bundle failed a check (the monitor names it on the console); the slots are
/// unchanged.
pub const REFUSED: u32 = 6;
/// The bundle is what the active slot already runs.
pub const ALREADY_INSTALLED: u32 = 7;
/// An update runs on trial: it must confirm itself before the next update, or an update
/// write came without `UpdateBegin`.
pub const BUSY: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bits_follow_the_manifest_names_and_flash_services_are_the_stateful_ones() {
        let services: alloc::vec::Vec<Service> = (0..32).filter_map(Service::from_u32).collect();
        assert_eq!(services.len(), 17);
        for service in services {
            let index = service.capability_bit().trailing_zeros() as usize;
            assert_eq!(crate::app::MONITOR_SERVICES[index], service.capability(), "{service:?}");
            let stateful = matches!(service.capability(), "update" | "storage" | "device-cert" | "reports")
                || service == Service::DeviceCertificate;
            assert_eq!(service.uses_flash(), stateful, "{service:?}");
        }
    }

    #[test]
    fn byte_fields_encode_as_length_and_bytes_and_decode_back() {
        let mut out = [0u8; 32];
        let sha = Request::Sha256 { data: &[7, 8, 9] };
        // Variant 1, length 3, the bytes: what a sequence of u8 encodes to as well.
        assert_eq!(postcard::to_slice(&sha, &mut out).unwrap(), [1, 3, 7, 8, 9]);
        let mut out = [0u8; 32];
        let verify = Request::Verify { public_key: &[1], message: &[], signature: &[2, 3] };
        let encoded = postcard::to_slice(&verify, &mut out).unwrap();
        assert_eq!(encoded, [4, 1, 1, 0, 2, 2, 3]);
        assert_eq!(postcard::from_bytes::<Request<'_>>(encoded).unwrap(), verify);
        let seq: (u8, &[u8]) = (1, &[7, 8, 9]);
        let mut out = [0u8; 32];
        assert_eq!(postcard::to_slice(&seq, &mut out).unwrap(), [1, 3, 7, 8, 9], "as a sequence");
    }

    #[test]
    fn a_request_starts_where_its_tail_lies_as_in_the_app_and_nowhere_else() {
        for head_len in 0..8 {
            for tail_address in 0x1000..0x1008u32 {
                let start = request_start(head_len, tail_address);
                assert!((REQUEST_OFFSET - REQUEST_SLACK..=REQUEST_OFFSET).contains(&start));
                assert_eq!((start + head_len) % 4, tail_address as usize % 4, "{head_len} {tail_address:#x}");
                let range = request_range(start as u32, REQUEST_MAX as u32).unwrap();
                assert!(range.end <= RESPONSE_OFFSET, "the request stays out of the response");
            }
        }
        assert_eq!(request_range(64, 10), Some(64..74));
        for (start, len) in
            [(60, 1), (65, 1), (0, 4), (u32::MAX, 4), (64, REQUEST_MAX as u32 + 1), (61, u32::MAX)]
        {
            assert_eq!(request_range(start, len), None, "{start} {len}");
        }
    }
}
