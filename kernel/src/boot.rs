//! The boot plan: from the image's app manifests and the board, what every app gets — its
//! endpoint, its capability table, its devices and GPIO pins — or why it is refused.
//!
//! [`plan`] is one pure function, used by the `septa` tool when it builds an image (for every
//! board it builds for) and by the kernel at boot ([`Kernel::start_apps`]), so the two cannot disagree. It
//! decides everything before any state changes: a refused app holds nothing — no endpoint,
//! no device, no pin — and an app that calls the endpoint of a refused server is refused
//! too, so nobody is left calling an endpoint that will never be served.

use crate::cap::{Cap, CapTable};
use crate::ipc::MAX_ENDPOINTS;
use crate::kprintln;
use crate::machine::Machine;
use crate::process::{self, MAX_PROCESSES, State};
use crate::system::Kernel;
use core::fmt;
use septa_abi::app::{MONITOR_SERVICES, Manifest};
use septa_abi::package::Kind;
use septa_targets::{Device, qemu_virt, raspi2b};

/// What the plan needs to know about a board.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    pub name: &'static str,
    pub devices: &'static [Device],
    pub gpio_pins: u8,
    /// RAM for apps (the frame region), in bytes.
    pub frames: usize,
}

impl Board {
    pub const QEMU_VIRT: Board = Board {
        name: qemu_virt::NAME,
        devices: qemu_virt::DEVICES,
        gpio_pins: qemu_virt::GPIO_PINS,
        frames: qemu_virt::FRAMES.size,
    };
    pub const RASPI2B: Board = Board {
        name: raspi2b::NAME,
        devices: raspi2b::DEVICES,
        gpio_pins: raspi2b::GPIO_PINS,
        frames: raspi2b::FRAMES.size,
    };
    /// Every board an image can be built for.
    pub const ALL: [Board; 2] = [Board::QEMU_VIRT, Board::RASPI2B];
    /// The board the kernel is built for.
    #[cfg(not(feature = "raspi2b"))]
    pub const THIS: Board = Board::QEMU_VIRT;
    #[cfg(feature = "raspi2b")]
    pub const THIS: Board = Board::RASPI2B;
}

/// Why an app is refused. Slots name the other app involved (`by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// Another app (earlier in the image) serves the same endpoint.
    EndpointTaken {
        endpoint: &'a str,
        by: usize,
    },
    NoEndpointLeft,
    /// Nobody (left) serves an endpoint the app calls: no app in the image serves it, or its
    /// server was refused.
    NobodyServes {
        endpoint: &'a str,
    },
    NoSuchDevice {
        device: &'a str,
    },
    DeviceTaken {
        device: &'a str,
        by: usize,
    },
    NoSuchPin {
        pin: u8,
    },
    PinTaken {
        pin: u8,
        by: usize,
    },
    TooManyCapabilities,
}

impl Refusal<'_> {
    /// The manifest field at fault, as `app.toml` spells it under `[capabilities]`.
    pub fn field(&self) -> &'static str {
        match self {
            Refusal::EndpointTaken { .. } | Refusal::NoEndpointLeft => "serve",
            Refusal::NobodyServes { .. } => "call",
            Refusal::NoSuchDevice { .. } | Refusal::DeviceTaken { .. } => "devices",
            Refusal::NoSuchPin { .. } | Refusal::PinTaken { .. } => "gpio",
            Refusal::TooManyCapabilities => "capabilities",
        }
    }
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::EndpointTaken { endpoint, .. } => {
                write!(f, "its endpoint {endpoint:?} is already served by another app")
            }
            Refusal::NoEndpointLeft => write!(f, "no endpoint left (at most {MAX_ENDPOINTS})"),
            Refusal::NobodyServes { endpoint } => {
                write!(f, "it calls {endpoint:?}, an endpoint nobody serves")
            }
            Refusal::NoSuchDevice { device } => write!(f, "it names a device the board lacks ({device:?})"),
            Refusal::DeviceTaken { device, .. } => write!(f, "its device {device:?} belongs to another app"),
            Refusal::NoSuchPin { pin } => write!(f, "it names GPIO pin {pin}, which the board lacks"),
            Refusal::PinTaken { pin, .. } => write!(f, "its GPIO pin {pin} belongs to another app"),
            Refusal::TooManyCapabilities => write!(f, "too many capabilities"),
        }
    }
}

/// What one app is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The endpoint number it serves, if any.
    pub endpoint: Option<u8>,
    pub caps: CapTable,
    /// Board devices it holds (by index), with the handle of each.
    pub devices: heapless::Vec<(usize, u32), { septa_abi::app::MAX_DEVICES }>,
    /// GPIO pins it holds (a bit set).
    pub pins: u32,
}

/// The plan for one image: for each app slot, its grant or the reason it is refused.
pub type Plan<'a> = [Option<Result<Grant, Refusal<'a>>>; MAX_PROCESSES];

/// Decides what every app of `apps` (by process slot; `None`: no app there) gets on `board`.
/// Servers take endpoint numbers in slot order; the first app to serve a name keeps it.
pub fn plan<'a>(apps: &[Option<&Manifest<'a>>], board: &Board) -> Plan<'a> {
    let mut refused: [Option<Refusal<'a>>; MAX_PROCESSES] = [None; MAX_PROCESSES];
    // Each round either succeeds for every app still in, or refuses one more: at most
    // MAX_PROCESSES rounds.
    loop {
        match round(apps, board, &refused) {
            Ok(plan) => return plan,
            Err((index, reason)) => refused[index] = Some(reason),
        }
    }
}

/// One attempt with the apps not yet refused; the first app that cannot be granted is the
/// error.
fn round<'a>(
    apps: &[Option<&Manifest<'a>>],
    board: &Board,
    refused: &[Option<Refusal<'a>>; MAX_PROCESSES],
) -> Result<Plan<'a>, (usize, Refusal<'a>)> {
    let mut plan: Plan = [const { None }; MAX_PROCESSES];
    // Only MAX_PROCESSES slots exist; the build refuses a bigger image first.
    let live = || {
        let apps = apps.iter().take(MAX_PROCESSES).enumerate();
        apps.filter_map(|(i, m)| Some((i, (*m)?))).filter(|(i, _)| refused[*i].is_none())
    };
    // Endpoint names with their servers' slots.
    let mut endpoints: [Option<(&str, usize)>; MAX_ENDPOINTS] = [None; MAX_ENDPOINTS];
    for (index, manifest) in live() {
        let Some(name) = manifest.serve else { continue };
        if let Some((_, by)) = endpoints.iter().flatten().find(|(e, _)| *e == name) {
            return Err((index, Refusal::EndpointTaken { endpoint: name, by: *by }));
        }
        let free = endpoints.iter().position(Option::is_none).ok_or((index, Refusal::NoEndpointLeft))?;
        endpoints[free] = Some((name, index));
    }
    let endpoint =
        |name: &str| endpoints.iter().position(|e| e.is_some_and(|(e, _)| e == name)).map(|e| e as u8);
    // The slot holding each device and pin so far.
    let mut holders = Holders { devices: [None; 64], pins: [None; 32] };
    for (index, manifest) in live() {
        let grant = grant(manifest, board, &endpoint, &holders).map_err(|e| (index, e))?;
        for &(device, _) in &grant.devices {
            holders.devices[device] = Some(index);
        }
        for pin in 0..32 {
            if grant.pins & (1 << pin) != 0 {
                holders.pins[pin] = Some(index);
            }
        }
        plan[index] = Some(Ok(grant));
    }
    for (index, reason) in refused.iter().enumerate() {
        if let Some(reason) = reason {
            plan[index] = Some(Err(*reason));
        }
    }
    Ok(plan)
}

/// Which app slot holds each board device and GPIO pin.
struct Holders {
    devices: [Option<usize>; 64],
    pins: [Option<usize>; 32],
}

/// What one app gets, given the endpoints and what earlier apps hold.
fn grant<'a>(
    manifest: &Manifest<'a>,
    board: &Board,
    endpoint: &impl Fn(&str) -> Option<u8>,
    holders: &Holders,
) -> Result<Grant, Refusal<'a>> {
    let mut caps = CapTable::new();
    let grant = |caps: &mut CapTable, cap| caps.grant(cap).ok_or(Refusal::TooManyCapabilities);
    let mut served = None;
    if let Some(name) = manifest.serve {
        // Registered by `round` for every server still in.
        let number = endpoint(name).ok_or(Refusal::NoEndpointLeft)?;
        grant(&mut caps, Cap::Serve { endpoint: number })?;
        served = Some(number);
    }
    for &name in &manifest.call {
        let number = endpoint(name).ok_or(Refusal::NobodyServes { endpoint: name })?;
        grant(&mut caps, Cap::Call { endpoint: number })?;
    }
    let mut devices = heapless::Vec::new();
    for &name in &manifest.devices {
        let unknown = Refusal::NoSuchDevice { device: name };
        let device = board.devices.iter().position(|d| d.name == name).filter(|&d| d < 64).ok_or(unknown)?;
        if let Some(by) = holders.devices[device] {
            return Err(Refusal::DeviceTaken { device: name, by });
        }
        let handle = grant(&mut caps, Cap::Device { device: device as u8 })?;
        devices.push((device, handle)).map_err(|_| Refusal::TooManyCapabilities)?;
    }
    let mut pins = 0u32;
    for &pin in &manifest.gpio {
        if pin >= board.gpio_pins || pin >= 32 {
            return Err(Refusal::NoSuchPin { pin });
        }
        if let Some(by) = holders.pins[pin as usize] {
            return Err(Refusal::PinTaken { pin, by });
        }
        pins |= 1 << pin;
    }
    if pins != 0 {
        grant(&mut caps, Cap::Gpio { pins })?;
    }
    if !manifest.monitor.is_empty() {
        let services = manifest.monitor.iter().fold(0u32, |set, name| {
            set | MONITOR_SERVICES.iter().position(|s| s == name).map_or(0, |i| 1 << i)
        });
        grant(&mut caps, Cap::Monitor { services })?;
    }
    Ok(Grant { endpoint: served, caps, devices, pins })
}

impl<M: Machine> Kernel<M> {
    /// Starts every app package in the booted slot; a refused app is reported and skipped.
    /// First every app is loaded, then the boot plan decides what each gets, then the plan is
    /// carried out. Returns how many apps started.
    pub fn start_apps(&mut self) -> usize {
        let slot = match self.machine.slot() {
            Ok(slot) => slot,
            Err(error) => {
                kprintln!(self.machine, "septa: kernel: slot: {error}; no apps started");
                return 0;
            }
        };
        for (index, entry) in slot.packages().enumerate() {
            let (offset, package) = match entry {
                Ok(found) => found,
                Err(error) => {
                    kprintln!(self.machine, "septa: kernel: slot: {error}; no further apps started");
                    break;
                }
            };
            if package.header.kind != Kind::App {
                continue;
            }
            let Some(pid) = self.processes.iter().position(|p| p.state == State::Free) else {
                kprintln!(
                    self.machine,
                    "septa: kernel: app package {index} refused: {}",
                    process::SpawnError::NoFreeSlot
                );
                continue;
            };
            let process = &mut self.processes[pid];
            match process::spawn(&mut self.machine, process, &package) {
                Ok(()) => process.package_offset = offset,
                Err(error) => {
                    kprintln!(self.machine, "septa: kernel: app package {index} refused: {error}");
                    *process = process::Process::EMPTY;
                }
            }
        }
        let manifests: [Option<&Manifest<'static>>; MAX_PROCESSES] = core::array::from_fn(|pid| {
            let process = &self.processes[pid];
            (process.state == State::Ready).then_some(process.manifest.as_ref()).flatten()
        });
        let plan = plan(&manifests, &Board::THIS);
        let mut started = 0;
        for (pid, decision) in plan.into_iter().enumerate() {
            match decision {
                None => {}
                Some(Ok(grant)) => {
                    self.carry_out(pid, grant);
                    started += 1;
                }
                Some(Err(reason)) => self.refuse(pid, &reason),
            }
        }
        started
    }

    fn carry_out(&mut self, pid: usize, grant: Grant) {
        let process = &self.processes[pid];
        if let (Some(number), Some(name)) = (grant.endpoint, process.manifest.as_ref().and_then(|m| m.serve))
        {
            self.endpoints[number as usize] = Some(name);
            self.ipc.serve(number, pid as u8);
        }
        for (device, handle) in grant.devices {
            self.device_owners[device] = Some((pid, handle));
        }
        for pin in 0..32 {
            if grant.pins & (1 << pin) != 0 {
                self.pin_owners[pin] = Some(pid);
            }
        }
        self.processes[pid].caps = grant.caps;
        self.make_ready(pid);
    }

    /// Drops an app the plan refused: it was loaded, so its memory goes back; it was given
    /// nothing else.
    fn refuse(&mut self, pid: usize, reason: &dyn fmt::Display) {
        let process = &mut self.processes[pid];
        kprintln!(self.machine, "septa: kernel: app {} refused: {reason}", process.name());
        process.release(&mut self.machine);
        process.state = State::Ended;
    }
}
