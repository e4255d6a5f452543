//! The boot plan: from the image's app manifests and the board, what every app gets — its
//! endpoint, its capability table, its devices and GPIO pins — or why it is refused.
//!
//! [`plan`] is one pure function, used by the `septa` tool when it builds an image (for every
//! board) and by the kernel at boot ([`Kernel::start_apps`]), so the two cannot disagree. It
//! decides everything before any state changes: a refused app holds nothing — no endpoint,
//! no device, no pin — and an app that calls the endpoint of a refused server is refused
//! too, so nobody is left calling an endpoint that will never be served.

use crate::cap::{Cap, CapTable};
use crate::ipc::MAX_ENDPOINTS;
use crate::kprintln;
use crate::machine::Machine;
use crate::process::{self, MAX_PROCESSES, State};
use crate::system::Kernel;
use septa_abi::app::{MONITOR_SERVICES, Manifest};
use septa_abi::package::Kind;
use septa_targets::Device;

/// What the plan needs to know about a board.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    pub devices: &'static [Device],
    pub gpio_pins: u8,
}

impl Board {
    /// The board the kernel is built for.
    pub const THIS: Board =
        Board { devices: septa_targets::board::DEVICES, gpio_pins: septa_targets::board::GPIO_PINS };
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
pub type Plan = [Option<Result<Grant, &'static str>>; MAX_PROCESSES];

/// Decides what every app of `apps` (by process slot; `None`: no app there) gets on `board`.
/// Servers take endpoint numbers in slot order; the first app to serve a name keeps it.
pub fn plan(apps: &[Option<&Manifest<'_>>], board: &Board) -> Plan {
    let mut refused: [Option<&'static str>; MAX_PROCESSES] = [None; MAX_PROCESSES];
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
fn round(
    apps: &[Option<&Manifest<'_>>],
    board: &Board,
    refused: &[Option<&'static str>; MAX_PROCESSES],
) -> Result<Plan, (usize, &'static str)> {
    let mut plan: Plan = [const { None }; MAX_PROCESSES];
    // Only MAX_PROCESSES slots exist; the build refuses a bigger image first.
    let live = || {
        let apps = apps.iter().take(MAX_PROCESSES).enumerate();
        apps.filter_map(|(i, m)| Some((i, (*m)?))).filter(|(i, _)| refused[*i].is_none())
    };
    let mut endpoints: [Option<&str>; MAX_ENDPOINTS] = [None; MAX_ENDPOINTS];
    for (index, manifest) in live() {
        let Some(name) = manifest.serve else { continue };
        if endpoints.contains(&Some(name)) {
            return Err((index, "its endpoint is already served by another app"));
        }
        let free = endpoints.iter().position(Option::is_none).ok_or((index, "no endpoint left"))?;
        endpoints[free] = Some(name);
    }
    let endpoint = |name: &str| endpoints.iter().position(|e| *e == Some(name)).map(|e| e as u8);
    let (mut devices_taken, mut pins_taken) = (0u64, 0u32);
    for (index, manifest) in live() {
        let grant = grant(manifest, board, &endpoint, devices_taken, pins_taken).map_err(|e| (index, e))?;
        for &(device, _) in &grant.devices {
            devices_taken |= 1 << device;
        }
        pins_taken |= grant.pins;
        plan[index] = Some(Ok(grant));
    }
    for (index, reason) in refused.iter().enumerate() {
        if let Some(reason) = reason {
            plan[index] = Some(Err(*reason));
        }
    }
    Ok(plan)
}

/// What one app gets, given the endpoints and what earlier apps hold.
fn grant(
    manifest: &Manifest<'_>,
    board: &Board,
    endpoint: &impl Fn(&str) -> Option<u8>,
    devices_taken: u64,
    pins_taken: u32,
) -> Result<Grant, &'static str> {
    let mut caps = CapTable::new();
    let grant = |caps: &mut CapTable, cap| caps.grant(cap).ok_or("too many capabilities");
    let mut served = None;
    if let Some(name) = manifest.serve {
        let number = endpoint(name).ok_or("its endpoint is not registered")?;
        grant(&mut caps, Cap::Serve { endpoint: number })?;
        served = Some(number);
    }
    for name in &manifest.call {
        grant(
            &mut caps,
            Cap::Call { endpoint: endpoint(name).ok_or("it calls an endpoint nobody serves")? },
        )?;
    }
    let mut devices = heapless::Vec::new();
    for name in &manifest.devices {
        let device =
            board.devices.iter().position(|d| d.name == *name).ok_or("it names a device the board lacks")?;
        if device >= 64 || devices_taken & (1 << device) != 0 {
            return Err("its device belongs to another app");
        }
        let handle = grant(&mut caps, Cap::Device { device: device as u8 })?;
        devices.push((device, handle)).map_err(|_| "too many devices")?;
    }
    let mut pins = 0u32;
    for &pin in &manifest.gpio {
        if pin >= board.gpio_pins || pin >= 32 {
            return Err("it names a GPIO pin the board lacks");
        }
        if pins_taken & (1 << pin) != 0 {
            return Err("its GPIO pin belongs to another app");
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
                Some(Err(reason)) => self.refuse(pid, reason),
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
    fn refuse(&mut self, pid: usize, reason: &str) {
        let process = &mut self.processes[pid];
        kprintln!(self.machine, "septa: kernel: app {} refused: {reason}", process.name());
        process.release(&mut self.machine);
        process.state = State::Ended;
    }
}
