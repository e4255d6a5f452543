//! QEMU run configurations: how each board's images are booted.
//!
//! `cargo xtask run`, the integration tests and the benchmarks (Septa and the Linux peer) all
//! start QEMU through [`Config::command`], so the command a user copies from the README is the
//! one the tests use. Every command line starts with `-nodefaults` and then names each device
//! it uses: QEMU adds no network card, serial port or monitor of its own, so nothing needs a
//! file (such as a network card's option ROM) from outside the `qemu-system-arm` package.

#![forbid(unsafe_code)]

mod package_only;

pub use package_only::{PACKAGE, prepare as prepare_package_only};
use septa_targets::{qemu_virt, raspi2b};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The QEMU binary for every board.
pub const QEMU: &str = "qemu-system-arm";

/// Names another QEMU binary to run instead of [`QEMU`]: `cargo xtask test` points it at a
/// copy that sees only the files of QEMU's own packages ([`prepare_package_only`]).
pub const QEMU_ENV: &str = "SEPTA_QEMU";

/// The QEMU binary to run: [`QEMU_ENV`] if set, else `qemu-system-arm` from the PATH.
pub fn binary() -> PathBuf {
    std::env::var_os(QEMU_ENV).map_or_else(|| PathBuf::from(QEMU), PathBuf::from)
}

/// Deterministic time: one guest nanosecond per instruction, idle time skipped.
pub const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// [`ICOUNT`] for a guest with a network: idle time passes in real time (`sleep=on`). The
/// host's side of a connection (QEMU's slirp, the relays, the servers) runs in real time,
/// so a guest that skipped its idle time would see its timeouts expire while the host has
/// not had a moment to answer. Executed instructions still count one nanosecond each.
pub const ICOUNT_NETWORK: [&str; 2] = ["-icount", "shift=0,sleep=on"];

/// The images one boot uses, as composed by `cargo xtask build` under
/// `target/septa/<board>/`.
#[derive(Clone, Debug)]
pub struct Images {
    /// The boot ROM for secure flash 0: loader and fuse area.
    pub rom: PathBuf,
    /// Flash 1: the image slots.
    pub flash: PathBuf,
}

impl Images {
    /// The images in `dir` under their standard names.
    pub fn in_dir(dir: &Path) -> Images {
        Images { rom: dir.join(ROM_FILE), flash: dir.join(FLASH_FILE) }
    }
}

pub const ROM_FILE: &str = "rom.img";
pub const FLASH_FILE: &str = "flash.img";
/// The dev kit's images: the loader ELF and the boot payload (fuses, boot state, slot A).
pub const LOADER_ELF_FILE: &str = "loader.elf";
pub const PAYLOAD_FILE: &str = "payload.img";

impl Images {
    /// The dev kit's images in `dir` (`rom` is the loader ELF, `flash` the boot payload).
    pub fn raspi2b_in_dir(dir: &Path) -> Images {
        Images { rom: dir.join(LOADER_ELF_FILE), flash: dir.join(PAYLOAD_FILE) }
    }
}

/// The boards QEMU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    QemuVirt,
    /// The dev kit, the loader given as an ELF (`-kernel`).
    Raspi2b,
    /// The dev kit started the way its firmware starts an SD card made by `cargo xtask
    /// sdcard`: the stub at 0, the flat loader and the payload at their configured addresses,
    /// every core starting at 0. `images.rom` is the SD card's `loader.bin`.
    Raspi2bSdCard,
    /// The benchmarks' Linux peer on the `virt` machine without the secure world:
    /// `images.rom` is its kernel, `images.flash` its initramfs.
    LinuxPeer,
}

impl Images {
    /// The images of an SD card boot directory.
    pub fn sdcard_in_dir(dir: &Path) -> Images {
        Images { rom: dir.join("loader.bin"), flash: dir.join(PAYLOAD_FILE) }
    }
}

/// The name of the stub the firmware runs first (`armstub=` in `config.txt`).
pub const ARMSTUB_FILE: &str = "septa-armstub.bin";

/// The Linux peer's files, as `bench/linux/run.sh` leaves them.
pub const LINUX_KERNEL_FILE: &str = "vmlinuz";
pub const LINUX_INITRD_FILE: &str = "initramfs.cpio";

impl Images {
    /// The Linux peer's kernel (`rom`) and initramfs (`flash`) in `dir`.
    pub fn linux_peer_in_dir(dir: &Path) -> Images {
        Images { rom: dir.join(LINUX_KERNEL_FILE), flash: dir.join(LINUX_INITRD_FILE) }
    }
}

/// One QEMU invocation.
#[derive(Clone, Debug)]
pub struct Config {
    pub board: Board,
    pub images: Images,
    /// Console on stdio with QEMU's monitor multiplexed (Ctrl-A X quits, Ctrl-A C switches
    /// to the monitor), for interactive use. Otherwise serial on stdio and no monitor.
    pub interactive: bool,
    /// Run with [`ICOUNT`] ([`ICOUNT_NETWORK`] with a network).
    pub icount: bool,
    /// Keep the guest's flash writes in a temporary overlay that QEMU drops on exit
    /// (`snapshot=on`), so several QEMUs can share one image set (tests).
    pub throwaway: bool,
    /// Serve QEMU's human monitor on this Unix socket (non-interactive runs only).
    pub monitor_socket: Option<PathBuf>,
    /// An update bundle to load into the board's update inbox (development updates).
    pub inbox: Option<PathBuf>,
    /// The network card and QEMU's user network, loopback only (`qemu-virt` and the Linux
    /// peer; the dev kit's QEMU model has no network card).
    pub network: Option<Network>,
}

/// Where the guest reaches the host's forwards: `devhost` in the image's name table.
pub const FORWARD_ADDRESS: &str = "10.0.2.100";

/// The device's address on QEMU's user network (`septa_net::service::ADDRESS`), where
/// host forwards lead.
pub const DEVICE_ADDRESS: &str = "10.0.2.15";

/// QEMU's user network with `restrict=on`: the guest reaches nothing but the named
/// forwards, each a command QEMU starts per guest connection with the connection on its
/// standard input and output (`septa relay 127.0.0.1:PORT`). The host reaches the guest
/// only through the named host forwards, which listen on the host's loopback alone. Never a
/// tap or a bridge.
#[derive(Clone, Debug, Default)]
pub struct Network {
    pub forwards: Vec<Forward>,
    pub host_forwards: Vec<HostForward>,
}

/// Connections to `127.0.0.1:host_port` on the host reach the device's `guest_port`
/// (`hostfwd`; `restrict=on` limits only what the guest starts).
#[derive(Clone, Copy, Debug)]
pub struct HostForward {
    pub host_port: u16,
    pub guest_port: u16,
}

/// Guest connections to `10.0.2.100:guest_port` run `command`.
#[derive(Clone, Debug)]
pub struct Forward {
    pub guest_port: u16,
    pub command: String,
}

impl Network {
    /// A forward from `guest_port` to `septa relay` (the binary at `septa`) towards a
    /// server on the host's loopback.
    pub fn relay(mut self, guest_port: u16, septa: &Path, server: std::net::SocketAddr) -> Network {
        let command = format!("{} relay {server}", septa.display());
        self.forwards.push(Forward { guest_port, command });
        self
    }

    /// A forward from `127.0.0.1:host_port` on the host to the device's `guest_port`.
    pub fn host_forward(mut self, host_port: u16, guest_port: u16) -> Network {
        self.host_forwards.push(HostForward { host_port, guest_port });
        self
    }

    fn args(&self) -> Vec<String> {
        let mut netdev = String::from("user,id=n0,restrict=on,ipv6=off");
        for HostForward { host_port, guest_port } in &self.host_forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host_port}-{DEVICE_ADDRESS}:{guest_port}"));
        }
        for forward in &self.forwards {
            // A comma inside an option value is written twice.
            let command = forward.command.replace(',', ",,");
            netdev.push_str(&format!(",guestfwd=tcp:{FORWARD_ADDRESS}:{}-cmd:{command}", forward.guest_port));
        }
        // Transport 0, alone on its page (the monitor's virtio-rng is transport 31).
        let device = "virtio-net-device,netdev=n0,bus=virtio-mmio-bus.0".to_string();
        vec!["-netdev".into(), netdev, "-device".into(), device]
    }
}

impl Config {
    /// A non-interactive boot of `images` on `board` in real time, its flash writes kept.
    pub fn new(board: Board, images: Images) -> Config {
        Config {
            board,
            images,
            interactive: false,
            icount: false,
            throwaway: false,
            monitor_socket: None,
            inbox: None,
            network: None,
        }
    }

    /// The QEMU process for this configuration with `extra` arguments appended.
    pub fn command(&self, extra: &[String]) -> Command {
        let mut command = Command::new(binary());
        command.args(self.args()).args(extra);
        command
    }

    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["-nodefaults".into()];
        match self.board {
            Board::QemuVirt => {
                args.extend(qemu_virt::QEMU_MACHINE.iter().map(|s| s.to_string()));
                for (unit, file) in [(0, &self.images.rom), (1, &self.images.flash)] {
                    args.push("-drive".into());
                    let throwaway = if self.throwaway { ",snapshot=on" } else { "" };
                    args.push(format!("if=pflash,unit={unit},format=raw,file={}{throwaway}", file.display()));
                }
            }
            Board::Raspi2b => {
                // An ELF given with -kernel starts in Secure SVC at its entry point; the boot
                // payload lands where the firmware's `ramfsaddr` would put it.
                args.extend(raspi2b::QEMU_MACHINE.iter().map(|s| s.to_string()));
                args.extend(["-kernel".to_string(), self.images.rom.display().to_string(), "-device".into()]);
                args.push(format!(
                    "loader,file={},addr={:#x},force-raw=on",
                    self.images.flash.display(),
                    raspi2b::FLASH0.base
                ));
            }
            Board::Raspi2bSdCard => {
                args.extend(raspi2b::QEMU_MACHINE.iter().map(|s| s.to_string()));
                let stub = self.images.rom.with_file_name(ARMSTUB_FILE);
                for (file, address) in [
                    (&stub, 0),
                    (&self.images.rom, raspi2b::LOADER_ROM.base),
                    (&self.images.flash, raspi2b::FLASH0.base),
                ] {
                    args.push("-device".into());
                    args.push(format!("loader,file={},addr={address:#x},force-raw=on", file.display()));
                }
            }
            Board::LinuxPeer => {
                args.extend(LINUX_PEER_MACHINE.map(String::from));
                args.extend(["-kernel".into(), self.images.rom.display().to_string()]);
                args.extend(["-initrd".into(), self.images.flash.display().to_string()]);
                // QEMU's own device tree for this machine with the PMU described
                // (`bench/linux/run.sh`), so Linux can count instructions with perf.
                let dtb = self.images.rom.with_file_name(LINUX_DTB_FILE);
                args.extend(["-dtb".into(), dtb.display().to_string()]);
                args.extend(["-append", "console=ttyAMA0 quiet panic=-1", "-no-reboot"].map(String::from));
            }
        }
        if self.board != Board::LinuxPeer {
            args.extend(["-semihosting-config".into(), "enable=on,target=native".into()]);
        }
        // The console is the board's first UART; with `-nodefaults` it must be named.
        args.extend(["-display", "none", "-serial"].map(String::from));
        if self.interactive {
            // QEMU's monitor multiplexed on stdio: Ctrl-A X quits, Ctrl-A C switches.
            args.push("mon:stdio".into());
        } else {
            args.push("stdio".into());
            if let Some(path) = &self.monitor_socket {
                args.push("-monitor".into());
                args.push(format!("unix:{},server=on,wait=off", path.display()));
            }
        }
        if self.icount {
            let network = self.network.is_some() && matches!(self.board, Board::QemuVirt | Board::LinuxPeer);
            args.extend(if network { ICOUNT_NETWORK } else { ICOUNT }.map(String::from));
        }
        if let Some(network) = &self.network
            && matches!(self.board, Board::QemuVirt | Board::LinuxPeer)
        {
            args.extend(network.args());
        }
        if let Some(bundle) = &self.inbox {
            args.push("-device".into());
            args.push(format!(
                "loader,file={},addr={:#x},force-raw=on",
                bundle.display(),
                qemu_virt::UPDATE_INBOX.base
            ));
        }
        args
    }

    /// The full command line, quoted for a shell, as the README shows it.
    pub fn command_line(&self, extra: &[String]) -> String {
        std::iter::once(binary().display().to_string())
            .chain(self.args())
            .chain(extra.iter().cloned())
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The Linux peer's machine: the same CPU as `qemu-virt`, without the secure world, and the
/// RAM a Debian kernel with an initramfs wants.
/// The Linux peer's machine; `bench/linux/run.sh` dumps its device tree with the same
/// options.
const LINUX_PEER_MACHINE: [&str; 6] = ["-M", "virt", "-cpu", "cortex-a7", "-m", "512M"];
/// The Linux peer's device tree, next to its kernel.
pub const LINUX_DTB_FILE: &str = "virt-pmu.dtb";

#[cfg(test)]
mod tests {
    use super::*;

    fn every_board() -> Vec<Config> {
        let images = Images::in_dir(Path::new("images"));
        [Board::QemuVirt, Board::Raspi2b, Board::Raspi2bSdCard, Board::LinuxPeer]
            .into_iter()
            .flat_map(|board| {
                let quiet = Config::new(board, images.clone());
                let interactive = Config { interactive: true, ..quiet.clone() };
                [quiet, interactive]
            })
            .collect()
    }

    #[test]
    fn every_command_line_turns_off_qemus_default_devices() {
        for config in every_board() {
            let args = config.args();
            assert_eq!(args[0], "-nodefaults", "{:?}: {args:?}", config.board);
            // A network card only where the command line defines its own network.
            assert!(!args.iter().any(|a| a == "-net" || a == "-nic"), "{args:?}");
        }
    }

    #[test]
    fn every_command_line_names_its_console() {
        for config in every_board() {
            let args = config.args();
            let serial = args.iter().position(|a| a == "-serial").map(|i| args[i + 1].as_str());
            let expected = if config.interactive { "mon:stdio" } else { "stdio" };
            assert_eq!(serial, Some(expected), "{:?}: {args:?}", config.board);
        }
    }

    #[test]
    fn the_network_is_restricted_and_its_host_forwards_listen_on_loopback_only() {
        let network = Network::default().relay(7, Path::new("septa"), "127.0.0.1:4000".parse().unwrap());
        let args = network.host_forward(5000, 8080).args();
        assert_eq!(
            args[1],
            "user,id=n0,restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:5000-10.0.2.15:8080,\
             guestfwd=tcp:10.0.2.100:7-cmd:septa relay 127.0.0.1:4000"
        );
    }
}
