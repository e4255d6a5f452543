//! The harness the integration tests boot Septa with.
//!
//! Every boot runs under `-icount shift=0,sleep=off`, so guest time does not depend on how
//! busy the host is; the wall-clock timeout is only a hang guard. A boot that hangs or
//! fails an assertion shows the whole console in the test failure.
//!
//! The images come from `cargo xtask test`, which builds them and passes their directory in
//! `SEPTA_IMAGES` (`target/septa/qemu-virt` by default). It also points `SEPTA_QEMU` at a
//! QEMU that sees only its own package's files, so a boot that needs a file a fresh machine
//! lacks fails here, and the failure says which file.

#![forbid(unsafe_code)]

use septa_qemu::{Board, Config, Images};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{fs, thread};

/// How long any boot may take in wall time before it counts as hung.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The directory of the default image set.
pub fn images_dir() -> PathBuf {
    match std::env::var_os("SEPTA_IMAGES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/septa/qemu-virt"),
    }
}

/// The directory of the dev kit's image sets (`target/septa/raspi2b` by default).
pub fn raspi2b_dir() -> PathBuf {
    match std::env::var_os("SEPTA_RASPI2B_IMAGES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/septa/raspi2b"),
    }
}

/// The dev kit's default images (`name` "") or a variant.
pub fn raspi2b_images(name: &str) -> Images {
    Images::raspi2b_in_dir(&raspi2b_dir().join(name))
}

/// The default images, shared read-only between tests.
pub fn default_images() -> Images {
    Images::in_dir(&images_dir())
}

/// An image set built with test-only features (`cargo xtask test` builds them).
pub fn variant_images(name: &str) -> Images {
    Images::in_dir(&images_dir().join(name))
}

/// A private, writable copy of `images` for a test that modifies them.
pub fn scratch_copy(images: &Images, test: &str) -> Images {
    let dir = std::env::temp_dir().join(format!("septa-{test}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("creating a scratch directory");
    let copy = Images::in_dir(&dir);
    fs::copy(&images.rom, &copy.rom).expect("copying rom.img (run `cargo xtask test`)");
    fs::copy(&images.flash, &copy.flash).expect("copying flash.img (run `cargo xtask test`)");
    copy
}

/// The path of the `septa` host tool `cargo xtask test` built (`SEPTA_TOOL`).
pub fn septa_path() -> PathBuf {
    std::env::var_os("SEPTA_TOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/septa"))
}

/// The `septa` host tool.
pub fn septa() -> Command {
    Command::new(septa_path())
}

/// The boot state the device keeps in flash 0 of `images`.
pub fn boot_state(images: &Images) -> septa_abi::boot_state::BootState {
    use septa_abi::boot_state::BootState;
    use septa_targets::qemu_virt as board;
    let rom = fs::read(&images.rom).expect("reading rom.img");
    let flash = septa_abi::flash::MemFlash::new(rom, board::FLASH_SECTOR);
    BootState::load(&flash, &BootState::journal(board::BOOT_STATE.base - board::FLASH0.base, 2))
}

/// `septa report verify --flash` on the flash 1 image of `images`: success and output.
pub fn verify_report_ring(images: &Images) -> (bool, String) {
    let device_key = images_dir().join("keys/device.pub.pem");
    let output = septa()
        .args(["report", "verify", "--device-key"])
        .arg(&device_key)
        .arg("--flash")
        .arg(&images.flash)
        .output()
        .expect("running septa");
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// A QEMU boot being prepared.
pub struct Boot {
    config: Config,
    extra: Vec<String>,
}

impl Boot {
    pub fn new(images: Images) -> Boot {
        Boot {
            config: Config { icount: true, throwaway: true, ..Config::new(Board::QemuVirt, images) },
            extra: Vec::new(),
        }
    }

    /// Extra QEMU arguments.
    pub fn args<const N: usize>(mut self, args: [&str; N]) -> Boot {
        self.extra.extend(args.map(String::from));
        self
    }

    /// Stores `value` at physical `address` before the CPU starts (`-device loader`).
    pub fn poke(self, address: usize, value: u32) -> Boot {
        let device = format!("loader,addr={address:#x},data={value:#x},data-len=4");
        self.args(["-device", &device])
    }

    /// Boots the Raspberry Pi 2B (`-M raspi2b`) instead of `qemu-virt`.
    pub fn raspi2b(mut self) -> Boot {
        self.config.board = Board::Raspi2b;
        self
    }

    /// Boots the Raspberry Pi 2B from an SD card directory's files, as its firmware would.
    pub fn raspi2b_sdcard(mut self) -> Boot {
        self.config.board = Board::Raspi2bSdCard;
        self
    }

    /// Lets the guest's flash writes reach the image files (a private copy: see
    /// [`scratch_copy`]), so the next boot sees them, like a device across power cycles.
    pub fn persistent(mut self) -> Boot {
        self.config.throwaway = false;
        self
    }

    /// Puts an update bundle into the board's update inbox.
    pub fn inbox(mut self, bundle: &Path) -> Boot {
        self.config.inbox = Some(bundle.to_path_buf());
        self
    }

    /// Adds the network card and QEMU's loopback-only user network with `network`'s forwards.
    pub fn network(mut self, network: septa_qemu::Network) -> Boot {
        self.config.network = Some(network);
        self
    }

    /// Runs in real time (no `-icount`), for tests that must act between guest events.
    pub fn real_time(mut self) -> Boot {
        self.config.icount = false;
        self
    }

    /// Serves QEMU's monitor on a Unix socket for [`Running::monitor`].
    pub fn with_monitor(mut self, path: PathBuf) -> Boot {
        let _ = fs::remove_file(&path);
        self.config.monitor_socket = Some(path);
        self
    }

    pub fn spawn(self) -> Running {
        let qemu = septa_qemu::binary();
        let mut child = self
            .config
            .command(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {}: {e} (run `cargo xtask test`, which installs it)", qemu.display())
            });
        let console = Arc::new(Mutex::new(String::new()));
        let readers = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .map(|stream| {
            let console = Arc::clone(&console);
            thread::spawn(move || collect(stream, &console))
        });
        Running { child, console, readers, monitor_socket: self.config.monitor_socket }
    }

    /// Boots and waits until QEMU exits (or the hang guard fires).
    pub fn run(self) -> Outcome {
        let mut running = self.spawn();
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = running.child.try_wait().expect("waiting for QEMU") {
                running.drain();
                return Outcome { console: running.console(), status: status.code(), hung: false };
            }
            if Instant::now() > deadline {
                running.kill();
                return Outcome { console: running.console(), status: None, hung: true };
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn collect(mut stream: Box<dyn Read + Send>, console: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
        console.lock().unwrap().push_str(&text);
    }
}

/// A QEMU that is still running.
pub struct Running {
    child: Child,
    console: Arc<Mutex<String>>,
    /// The threads copying QEMU's stdout and stderr into `console`.
    readers: [JoinHandle<()>; 2],
    monitor_socket: Option<PathBuf>,
}

impl Running {
    pub fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Waits until the console holds the whole line containing `text` (up to its newline, so a
    /// test that reads the rest of that line sees all of it); panics with the console on a
    /// timeout or exit.
    pub fn wait_for(&mut self, text: &str) {
        self.wait_for_nth(text, 1);
    }

    /// Waits until the console contains `text` at least `n` times and the line of the `n`-th
    /// has ended; panics with the console on a timeout or exit.
    pub fn wait_for_nth(&mut self, text: &str, n: usize) {
        let deadline = Instant::now() + HANG_GUARD;
        while !holds_nth_whole_line(&self.console(), text, n) {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                let console = self.console();
                panic!(
                    "QEMU exited ({status}) before printing {text:?} (occurrence {n}); {}console:\n{console}",
                    missing_file(&console)
                );
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("no {text:?} (occurrence {n}) within {HANG_GUARD:?}; console:\n{}", self.console());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Once QEMU has exited: waits until the reader threads have copied all it wrote (they
    /// end at the pipes' end of file), so the console is complete however busy the host is.
    fn drain(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.readers.iter().all(JoinHandle::is_finished) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs one command on QEMU's own monitor and returns its output.
    pub fn monitor(&mut self, command: &str) -> String {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let path = self.monitor_socket.as_ref().expect("Boot::with_monitor was not used");
        let mut stream = UnixStream::connect(path).expect("connecting to QEMU's monitor");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = read_until_prompt(&mut stream);
        reply.clear();
        writeln!(stream, "{command}").unwrap();
        reply.push_str(&read_until_prompt(&mut stream));
        reply
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `console` contains `text` at least `n` times and the line of the `n`-th has ended.
fn holds_nth_whole_line(console: &str, text: &str, n: usize) -> bool {
    let Some(nth) = n.checked_sub(1) else { return true };
    console
        .match_indices(text)
        .nth(nth)
        .is_some_and(|(at, _)| text.ends_with('\n') || console[at + text.len()..].contains('\n'))
}

fn read_until_prompt(stream: &mut impl Read) -> String {
    let mut text = Vec::new();
    let mut byte = [0u8; 1];
    while !text.ends_with(b"(qemu) ") {
        match stream.read(&mut byte) {
            Ok(1) => text.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// What to tell the reader when QEMU stopped because it lacked one of its own data files.
fn missing_file(console: &str) -> String {
    let Some(line) = console.lines().find(|line| line.contains("failed to find romfile")) else {
        return String::new();
    };
    format!(
        "QEMU needs a file that `{}` does not install ({}): the command line in qemu/src/lib.rs \
         must name only devices that need no such file; ",
        septa_qemu::PACKAGE,
        line.trim()
    )
}

/// How a boot ended.
#[derive(Debug)]
pub struct Outcome {
    pub console: String,
    /// QEMU's exit status (the guest's power-off status), if it exited.
    pub status: Option<i32>,
    pub hung: bool,
}

impl Outcome {
    /// Asserts QEMU exited with `status` and the console contains each of `texts`.
    pub fn expect(&self, status: u32, texts: &[&str]) {
        assert!(!self.hung, "QEMU hung; console:\n{}", self.console);
        assert_eq!(
            self.status,
            Some(status as i32),
            "exit status; {}console:\n{}",
            missing_file(&self.console),
            self.console
        );
        for text in texts {
            assert!(self.console.contains(text), "missing {text:?}; console:\n{}", self.console);
        }
    }
}

/// Rewriting images the way an attacker with the flash files (or a careless OEM) would.
pub mod tamper {
    use super::*;
    use p256::ecdsa::SigningKey;
    use septa_abi::fuses::Fuses;
    use septa_abi::package::Package;
    use septa_abi::slot::Slot;
    use septa_targets::qemu_virt as board;
    use septa_tool::image::{self, PackageSpec};

    /// The development OEM key `cargo xtask build` signs with.
    pub fn development_key() -> SigningKey {
        septa_tool::keys::load_signing_key(&images_dir().join("keys/oem-dev.pem"))
            .expect("run `cargo xtask test`")
    }

    /// A key the device does not know.
    pub fn stranger_key() -> SigningKey {
        SigningKey::from_slice(&[0x5a; 32]).unwrap()
    }

    /// The packages of slot A, each as its bytes in flash.
    pub fn packages(images: &Images) -> Vec<Vec<u8>> {
        let flash = fs::read(&images.flash).unwrap();
        let at = board::SLOT_A.base - board::FLASH1.base;
        let slot = Slot::parse(&flash[at..at + board::SLOT_A.size]).unwrap();
        slot.packages().map(|p| p.unwrap().1).map(|p| flash_bytes(&flash, &p)).collect()
    }

    fn flash_bytes(flash: &[u8], package: &Package<'_>) -> Vec<u8> {
        let start =
            package.payload.as_ptr() as usize - flash.as_ptr() as usize - septa_abi::package::HEADER_LEN;
        flash[start..start + package.encoded_len()].to_vec()
    }

    /// Writes slot A anew with `packages`, its manifest signed with the development OEM key
    /// (what the OEM's own build would do).
    pub fn write_packages(images: &Images, packages: &[Vec<u8>]) {
        fs::write(&images.flash, image::compose_flash(packages, &development_key()).unwrap()).unwrap();
    }

    /// Changes package `index`'s bytes in flash (header and payload, keeping their length),
    /// leaving the signed slot manifest as it was: what an attacker without the OEM key can do.
    pub fn edit_in_place(images: &Images, index: usize, change: impl FnOnce(&mut Vec<u8>)) {
        let mut flash = fs::read(&images.flash).unwrap();
        let at = board::SLOT_A.base - board::FLASH1.base;
        let (offset, mut bytes) = {
            let slot = Slot::parse(&flash[at..at + board::SLOT_A.size]).unwrap();
            let (offset, package) = slot.packages().nth(index).unwrap().unwrap();
            (at + offset, flash_bytes(&flash, &package))
        };
        let len = bytes.len();
        change(&mut bytes);
        assert_eq!(bytes.len(), len, "an in-place edit keeps the package's length");
        flash[offset..offset + len].copy_from_slice(&bytes);
        fs::write(&images.flash, flash).unwrap();
    }

    /// The package re-signed by `key` after `change` edited its contents.
    pub fn resign(package: &[u8], key: &SigningKey, change: impl FnOnce(&mut PackageSpec)) -> Vec<u8> {
        let parsed = Package::parse(package).unwrap();
        let mut spec = PackageSpec {
            kind: parsed.header.kind,
            component_id: parsed.header.component_id,
            security_version: parsed.header.security_version,
            payload: parsed.payload.to_vec(),
        };
        change(&mut spec);
        spec.sign(key)
    }

    /// Rewrites the fuse area of the ROM after `change` edited the fuses.
    pub fn reprovision(images: &Images, change: impl FnOnce(&mut Fuses)) {
        let mut rom = fs::read(&images.rom).unwrap();
        let at = board::FUSES.base - board::FLASH0.base;
        let mut fuses = Fuses::decode(&rom[at..at + board::FUSES.size]).unwrap();
        change(&mut fuses);
        image::provision(&mut rom, &fuses).unwrap();
        fs::write(&images.rom, rom).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::holds_nth_whole_line;

    #[test]
    fn a_line_counts_only_once_it_has_ended() {
        assert!(!holds_nth_whole_line("[spinner] still spinning (round 3) at 12", "(round 3)", 1));
        assert!(holds_nth_whole_line("[spinner] still spinning (round 3) at 1200 ms\n", "(round 3)", 1));
        assert!(holds_nth_whole_line("ready\n", "ready\n", 1));
        assert!(!holds_nth_whole_line("other line\n", "ready", 1));
    }

    #[test]
    fn the_nth_line_counts_only_once_it_has_ended() {
        let console = "[counter] count 1\n[counter] count 2\n[counter] count 3";
        assert!(holds_nth_whole_line(console, "[counter] count ", 2));
        assert!(!holds_nth_whole_line(console, "[counter] count ", 3), "the third has not ended");
        assert!(!holds_nth_whole_line(console, "[counter] count ", 4));
        assert!(holds_nth_whole_line(console, "[counter] count ", 0));
    }
}
