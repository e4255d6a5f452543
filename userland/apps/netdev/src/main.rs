//! `netdev`: the virtio-net driver, an ordinary app. It maps the card's virtio-mmio
//! transport (`devices = ["virtio-net"]`), gets a DMA pool from the kernel (`dma-kib`) and
//! drives the card with the `virtio-drivers` crate, whose `Hal` here hands the device only
//! addresses inside that pool. Frames go to and come from the network service over IPC:
//! `ATTACH` when it starts (so a restarted driver resets the service's sockets), `FRAME` for
//! each received frame, `TAKE` for each frame to send. It sleeps in `wait` until the card
//! interrupts or the service signals frames to send.
//!
//! Received frames are handed over from the DMA buffer they arrived in, and frames to send
//! are written by the kernel straight into a DMA buffer: no copy in the driver.

#![no_std]
#![no_main]

use core::cell::RefCell;
use core::ptr::NonNull;
use septa_dma::{PAGE, Pool, SLOT};
use septa_syscalls::net::{STATUS_LEN, TX_PENDING, op, parse_reply};
use septa_syscalls::{self as sys, Error, Handle, HandleKind};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

septa_runtime::entry!(main);

/// Descriptors per queue, and the receive and transmit buffers (one DMA slot each).
const QUEUE: usize = 16;
const RX_BUFFERS: usize = 8;
const TX_BUFFERS: usize = 8;
const BOUNCE_SLOTS: usize = 4;
/// The test images' `netdev-crash` instance faults after this many received frames, so
/// the tests see the supervisor restart a driver in the middle of a transfer.
const CRASH_AFTER_FRAMES: u32 = 400;
/// A virtio-mmio transport's registers and configuration space.
const TRANSPORT_SIZE: usize = 0x200;

/// The pool, shared by the `Hal` functions (which the crate calls without a context).
struct PoolCell(RefCell<Option<Pool>>);

// SAFETY: the app has one thread and no asynchronous handlers, so the cell is never used
// from two places at once.
unsafe impl Sync for PoolCell {}

static POOL: PoolCell = PoolCell(RefCell::new(None));

fn with_pool<R>(f: impl FnOnce(&mut Pool) -> R) -> R {
    let mut pool = POOL.0.borrow_mut();
    f(pool.as_mut().expect("the pool is set up before the device"))
}

/// `virtio-drivers`' view of memory: every address it gives the device lies in the pool.
struct PoolHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned pool memory no one else uses;
// `share` returns a physical address the device may use for exactly the buffer (the
// buffer itself when it lies in the pool, else a bounce slot holding a copy), and
// `unshare` copies a bounced buffer back and frees the slot.
unsafe impl Hal for PoolHal {
    fn dma_alloc(pages: usize, _: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match with_pool(|p| p.alloc_pages(pages)) {
            Some((phys, virt)) => (phys, NonNull::new(virt as *mut u8).expect("the pool is not at 0")),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_: PhysAddr, _: NonNull<u8>, _: usize) -> i32 {
        0 // queue memory lives as long as the driver
    }

    unsafe fn mmio_phys_to_virt(_: PhysAddr, _: usize) -> NonNull<u8> {
        unreachable!("the transport is created from the mapped address")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let (virt, len) = (buffer.as_ptr() as *mut u8 as usize, buffer.len());
        if let Some(phys) = with_pool(|p| p.translate(virt, len)) {
            return phys;
        }
        let slot = with_pool(|p| p.bounce(len)).expect("a bounce slot is free");
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the crate passes a valid buffer of `len` bytes; the slot is ours and
            // at least `len` long (`bounce` checked).
            unsafe { core::ptr::copy_nonoverlapping(virt as *const u8, slot.virt as *mut u8, len) };
        }
        slot.phys
    }

    unsafe fn unshare(phys: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let Some(slot) = with_pool(|p| p.unbounce(phys)) else {
            return; // a buffer inside the pool: nothing was copied
        };
        if direction != BufferDirection::DriverToDevice {
            let (virt, len) = (buffer.as_ptr() as *mut u8 as usize, buffer.len());
            // SAFETY: as in `share`; the device is done with the slot.
            unsafe { core::ptr::copy_nonoverlapping(slot.virt as *const u8, virt as *mut u8, len) };
        }
    }
}

type Nic = VirtIONetRaw<PoolHal, MmioTransport<'static>, QUEUE>;

/// One DMA buffer of a [`SLOT`] bytes.
fn buffer(at: usize) -> &'static mut [u8] {
    // SAFETY: `at` is a slot of pool pages this driver carved out once for this buffer
    // alone (`buffers`); the pool stays mapped for the app's life.
    unsafe { core::slice::from_raw_parts_mut(at as *mut u8, SLOT) }
}

/// Carves `count` buffers out of the pool.
fn buffers<const N: usize>() -> [&'static mut [u8]; N] {
    let (_, virt) =
        with_pool(|p| p.alloc_pages((N * SLOT).div_ceil(PAGE))).expect("the pool holds the buffers");
    core::array::from_fn(|i| buffer(virt + i * SLOT))
}

/// The transmit side: buffers, which are free, and what each posted token holds.
struct Transmit {
    buffers: [&'static mut [u8]; TX_BUFFERS],
    free: u32,
    of_token: [(usize, usize); QUEUE],
    /// The virtio-net header's length.
    header: usize,
    /// A call found the service gone (`EPIPE`): attach again once it is back.
    service_gone: bool,
}

impl Transmit {
    fn free(&self) -> Option<usize> {
        (0..TX_BUFFERS).find(|i| self.free & (1 << i) != 0)
    }
}

/// Sends `message` (a `FRAME` or a `TAKE`) to the service, with transmit buffer `index`
/// (if free) receiving the reply, and sends the frame that comes back. Returns whether one
/// came. The reply lands so that its status overlaps the virtio header (written afterwards)
/// and the frame follows it: the kernel copies the frame straight into DMA memory.
fn exchange(nic: &mut Nic, service: Handle, tx: &mut Transmit, index: Option<usize>, message: &[u8]) -> bool {
    let mut scratch = [0u8; STATUS_LEN];
    let header = tx.header;
    let reply: &mut [u8] = match index {
        Some(i) => &mut tx.buffers[i][header - STATUS_LEN..],
        None => &mut scratch,
    };
    let n = match sys::call(service, message, reply) {
        Ok(n) => n,
        Err(e) => {
            tx.service_gone |= e == Error::Pipe;
            return false;
        }
    };
    let len = match parse_reply(&reply[..n.min(reply.len())]) {
        Ok((len, _)) if len > 0 => len as usize,
        _ => return false,
    };
    let Some(index) = index else { return false };
    let buffer = &mut *tx.buffers[index];
    if header + len > buffer.len() || nic.fill_buffer_header(buffer).is_err() {
        return false;
    }
    // SAFETY: the buffer stays untouched until `poll_transmit` returns its token.
    match unsafe { nic.transmit_begin(&buffer[..header + len]) } {
        Ok(token) => {
            tx.free &= !(1 << index);
            tx.of_token[token as usize % QUEUE] = (index, header + len);
            true
        }
        Err(e) => {
            sys::log!("frame not sent: {e:?}");
            false
        }
    }
}

struct Driver {
    nic: Nic,
    service: Handle,
    rx: [&'static mut [u8]; RX_BUFFERS],
    /// Which receive buffer each descriptor token holds.
    rx_of_token: [usize; QUEUE],
    tx: Transmit,
    /// Frames left before the injected fault (`netdev-crash` only).
    crash_in: Option<u32>,
}

impl Driver {
    fn post_receive(&mut self, index: usize) {
        // SAFETY: the buffer is DMA memory the device may write until the token comes back
        // from `poll_receive`; nothing else touches it meanwhile.
        match unsafe { self.nic.receive_begin(self.rx[index]) } {
            Ok(token) => self.rx_of_token[token as usize % QUEUE] = index,
            Err(e) => sys::log!("receive buffer {index} not posted: {e:?}"),
        }
    }

    /// Hands every received frame to the service, reclaims sent buffers and takes frames
    /// to send while there is room.
    fn run(&mut self) {
        while let Some(token) = self.nic.poll_receive() {
            if let Some(left) = self.crash_in.as_mut() {
                *left -= 1;
                if *left == 0 {
                    sys::log!("injected fault");
                    // SAFETY: reads address 0, which is never mapped: the kernel ends the app
                    // with a data abort, as it would a driver with a bug.
                    unsafe { core::ptr::read_volatile(core::ptr::null::<u32>()) };
                }
            }
            let index = self.rx_of_token[token as usize % QUEUE];
            // SAFETY: the token is the one `receive_begin` returned for this buffer.
            let got = unsafe { self.nic.receive_complete(token, self.rx[index]) };
            if let Ok((header, len)) = got
                && header >= 2
            {
                // `[FRAME][room]` goes right before the frame, over the virtio header the
                // driver no longer needs.
                let free = self.tx.free();
                let buffer = &mut *self.rx[index];
                buffer[header - 2] = op::FRAME;
                buffer[header - 1] = free.is_some() as u8;
                exchange(&mut self.nic, self.service, &mut self.tx, free, &buffer[header - 2..header + len]);
            }
            self.post_receive(index);
        }
        while let Some(token) = self.nic.poll_transmit() {
            let (index, len) = self.tx.of_token[token as usize % QUEUE];
            // SAFETY: the token is the one `transmit_begin` returned for this buffer.
            let _ = unsafe { self.nic.transmit_complete(token, &self.tx.buffers[index][..len]) };
            self.tx.free |= 1 << index;
        }
        while let Some(index) = self.tx.free() {
            if !exchange(&mut self.nic, self.service, &mut self.tx, Some(index), &[op::TAKE, 0]) {
                break;
            }
        }
    }
}

/// Tells the service the driver (re)started, with the card's MAC.
fn attach(service: Handle, mac: [u8; 6]) -> Result<(), Error> {
    let mut message = [0u8; 8];
    message[0] = op::ATTACH;
    message[2..].copy_from_slice(&mac);
    let mut reply = [0u8; 8];
    let n = sys::call(service, &message, &mut reply)?;
    parse_reply(&reply[..n.min(reply.len())]).map(drop)
}

fn main() {
    let device = sys::lookup(HandleKind::Device, "virtio-net").expect("the manifest grants virtio-net");
    let service = sys::lookup(HandleKind::Call, "net").expect("the manifest calls net");
    let base = sys::map_device(device).expect("the card maps");
    let pool = sys::dma_pool().expect("the manifest grants a DMA pool");
    let pool = Pool::new(pool.virt as usize, pool.phys as u64, pool.len as usize, BOUNCE_SLOTS);
    *POOL.0.borrow_mut() = Some(pool.expect("the kernel's pool is page aligned"));
    let header = NonNull::new(base as *mut VirtIOHeader).expect("mapped above 0");
    // SAFETY: `base` is the card's transport page, mapped as device memory for this app
    // alone; the transport's registers and configuration space are its first 0x200 bytes.
    let transport = match unsafe { MmioTransport::new(header, TRANSPORT_SIZE) } {
        Ok(transport) => transport,
        Err(e) => {
            sys::log!("no virtio-net card: {e:?}");
            return;
        }
    };
    let nic = match Nic::new(transport) {
        Ok(nic) => nic,
        Err(e) => {
            sys::log!("virtio-net did not start: {e:?}");
            return;
        }
    };
    let mac = nic.mac_address();
    let mut driver = Driver {
        nic,
        service,
        rx: buffers::<RX_BUFFERS>(),
        rx_of_token: [0; QUEUE],
        crash_in: (sys::info().name() == "netdev-crash").then_some(CRASH_AFTER_FRAMES),
        tx: Transmit {
            buffers: buffers::<TX_BUFFERS>(),
            free: (1 << TX_BUFFERS) - 1,
            of_token: [(0, 0); QUEUE],
            header: 0,
            service_gone: false,
        },
    };
    driver.tx.header = driver.nic.fill_buffer_header(driver.tx.buffers[0]).expect("a buffer holds a header");
    for index in 0..RX_BUFFERS {
        driver.post_receive(index);
    }
    match attach(service, mac) {
        Ok(()) => {}
        // Not yet up, or restarting: attached in the loop below.
        Err(Error::Pipe) => driver.tx.service_gone = true,
        Err(e) => {
            sys::log!("the network service refused the driver: {e}");
            return;
        }
    }
    sys::log!(
        "virtio-net up, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    let irq = sys::irq_bit(device.0);
    loop {
        // A restarted service knows no driver until it is told.
        if driver.tx.service_gone && attach(service, mac).is_ok() {
            driver.tx.service_gone = false;
        }
        driver.run();
        if sys::wait(irq | TX_PENDING).is_ok_and(|bits| bits & irq != 0) {
            driver.nic.ack_interrupt();
            let _ = sys::irq_ack(device);
        }
    }
}
