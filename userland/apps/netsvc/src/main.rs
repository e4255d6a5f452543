//! `netsvc`: the network service. It runs the TCP/IP stack (smoltcp, through
//! `septa_net::service`) for every app, serves the socket API on the `net` endpoint and
//! exchanges frames with the `netdev` driver. Who may connect where comes from the policy
//! the build wrote into [`SEPTA_NET_POLICY`] — inside this app's signed package — and from
//! the badge the kernel attaches to each call; nothing a client says about itself counts.

#![no_std]
#![no_main]

extern crate alloc;

use septa_abi::net::{POLICY_SPACE, Policy};
use septa_net::service::Service;
use septa_syscalls::net::{READY_NOTIFICATION, TX_PENDING};
use septa_syscalls::{self as sys, HandleKind, MESSAGE_MAX, monitor};

septa_runtime::entry!(main);
septa_runtime::heap!(288 * 1024);

/// The policy space the build fills (`septa_tool::netpolicy`): all zeros in the ELF as
/// linked, so a service packed without a policy refuses everyone.
#[used]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".rodata.septa_net_policy")]
static SEPTA_NET_POLICY: [u8; POLICY_SPACE] = [0; POLICY_SPACE];

fn now_ms() -> u64 {
    sys::info().uptime_ms as u64
}

fn main() {
    // SAFETY: a plain read of an initialised static; volatile so that the compiler reads
    // the bytes the build wrote rather than the zeros it linked.
    let space = unsafe { core::ptr::read_volatile(&raw const SEPTA_NET_POLICY) };
    let policy = Policy::decode(&space).unwrap_or_else(|_| {
        sys::log!("no network policy in the image: every caller is refused");
        Policy::default()
    });
    let endpoint = sys::lookup(HandleKind::Serve, "net").expect("the manifest serves net");
    let driver = sys::lookup(HandleKind::Call, "netdev").expect("the manifest may notify netdev");
    let mut seed = [0u8; 8];
    if let Err(e) = monitor::random(&mut seed) {
        sys::log!("no random seed ({e}): TCP sequence numbers are predictable");
    }
    sys::log!("serving {} destinations", policy.grants.len());
    let driver_badge = policy.driver;
    let mut service = Service::new(policy, u64::from_le_bytes(seed), now_ms());
    let mut message = [0u8; MESSAGE_MAX];
    let mut reply = [0u8; MESSAGE_MAX];
    let mut received = sys::recv(endpoint, &mut message);
    loop {
        received = match received {
            Ok(call) => {
                let request = &message[..call.len.min(MESSAGE_MAX)];
                let n = service.handle(&call.badge, request, &mut reply, now_ms());
                // The driver takes frames in its own loop; anyone else's request may have
                // queued some, and the driver sleeps until told.
                if service.has_frames() && driver_badge != Some(call.badge) {
                    let _ = sys::notify(driver, TX_PENDING);
                }
                // Apps asleep in `wait` whose sockets became ready (data, room, a
                // connection, an error) wake now.
                for app in service.take_wakeups() {
                    let _ = sys::notify_client(endpoint, &app, READY_NOTIFICATION);
                }
                sys::reply_recv(endpoint, &reply[..n], &mut message)
            }
            Err(_) => sys::recv(endpoint, &mut message),
        };
    }
}
