//! The app developer's path, as `docs/writing-an-app.md` walks it: `septa new` in a folder
//! outside the repository, `cargo build --release` there, `cargo xtask run --app` to
//! sideload it, `--gdb` to stop in an app under gdb-multiarch, and the VS Code set-up.
//!
//! `cargo xtask test` passes its own binary in `SEPTA_XTASK`; the tests run it as a user
//! runs `cargo xtask`.

use septa_tests::septa;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use std::{fs, thread};

fn checkout() -> PathBuf {
    fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap()
}

fn xtask() -> Command {
    let binary =
        std::env::var_os("SEPTA_XTASK").expect("SEPTA_XTASK (run these tests with `cargo xtask test`)");
    let mut command = Command::new(binary);
    // As `cargo xtask` (a `cargo run` of the xtask crate) runs it.
    command.current_dir(checkout()).env("CARGO_MANIFEST_DIR", checkout().join("xtask"));
    command
}

/// A running `cargo xtask run`, whose output lines arrive on a channel.
struct XtaskRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl XtaskRun {
    fn start(args: &[&str]) -> XtaskRun {
        let mut child = xtask()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting cargo xtask run");
        let (sender, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sender = sender.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send(line.replace('\r', ""));
                }
            });
        }
        XtaskRun { child, lines, seen: String::new() }
    }

    /// Waits for a line containing `text` and returns it (at most 5 minutes in all: the
    /// first run builds the app).
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {text:?}; output:\n{}", self.seen),
            }
        }
    }

    /// Quits QEMU as a user does, with Ctrl-A X on its console.
    fn quit(mut self) {
        let _ = self.child.stdin.as_mut().unwrap().write_all(b"\x01x");
        for _ in 0..300 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("Ctrl-A X did not stop QEMU; output:\n{}", self.seen);
    }
}

/// `septa new` + `cargo build --release` in a fresh folder outside the repository.
fn new_app(name: &str) -> PathBuf {
    let parent = std::env::temp_dir().join(format!("septa-app-dev-{}", std::process::id()));
    let _ = fs::remove_dir_all(&parent);
    fs::create_dir_all(&parent).unwrap();
    let dir = parent.join(name);
    let output = septa().arg("new").arg(&dir).arg("--septa").arg(checkout()).output().unwrap();
    assert!(output.status.success(), "septa new: {}", String::from_utf8_lossy(&output.stderr));
    // The build the user runs in that folder, with nothing else set up.
    let output = Command::new(env!("CARGO")).args(["build", "--release"]).current_dir(&dir).output().unwrap();
    assert!(output.status.success(), "cargo build --release: {}", String::from_utf8_lossy(&output.stderr));
    dir
}

#[test]
fn a_new_app_outside_the_tree_is_sideloaded_debugged_and_checked_like_ours() {
    let dir = new_app("weather");
    let app = dir.to_str().unwrap();

    // Sideloaded: signed with the development key, started with the image's other apps.
    let mut run = XtaskRun::start(&["run", "--app", app]);
    let line = run.wait_for("[weather] weather is running");
    assert!(line.contains("pid"), "{line}");
    run.wait_for("app weather exited with status 0");
    run.quit();

    // Stopped in gdb: hello's `main`, only in hello, though every app runs code at 0x10000.
    let mut run = XtaskRun::start(&["run", "--app", app, "--gdb", "hello", "--gdb-port", "1237"]);
    let command = run.wait_for("xtask: in another terminal: gdb-multiarch");
    run.wait_for("xtask: QEMU waits for gdb on 127.0.0.1:1237");
    // That comes before xtask builds the tool and starts the services; QEMU (and its gdb
    // stub) starts only after this line, and gdb retries its connection for a while after.
    run.wait_for("xtask: quit QEMU with Ctrl-A X");
    let script = command.split(" -x ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_string();
    let session = dir.join("session.gdb");
    fs::write(&session, GDB_SESSION.replace("PORT", "1237")).unwrap();
    let output = Command::new("gdb-multiarch")
        .args(["-q", "--batch", "-x", &script, "-x"])
        .arg(&session)
        .output()
        .expect("running gdb-multiarch (cargo xtask test installs it)");
    let gdb = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let _ = run.child.kill();
    let _ = run.child.wait();
    assert!(gdb.contains("Breakpoint 3, hello::main () at userland/apps/hello/src/main.rs"), "{gdb}");
    assert!(gdb.contains("#1  hello::septa_app_main ()"), "backtrace: {gdb}");
    assert!(gdb.contains("info = septa_syscalls::Info {pid: 0,"), "local: {gdb}");
    assert!(gdb.contains("mode = 0x10"), "user mode (CPSR.M) at the stop: {gdb}");
    assert!(
        gdb.contains("Breakpoint 4, septa_kernel::system::Kernel<kernel::arch::machine::Armv7>::end"),
        "kernel breakpoint: {gdb}"
    );
    let hits = |breakpoint: &str| -> usize {
        let at = gdb.find(&format!("\n{breakpoint}       breakpoint")).unwrap_or_else(|| panic!("{gdb}"));
        let rest = &gdb[at..];
        let count = rest.split("breakpoint already hit ").nth(1).unwrap();
        count.split(' ').next().unwrap().parse().unwrap()
    };
    // The conditional breakpoint at 0x10000 stopped once (hello); the unconditional one
    // at the same address saw the other apps run it too, so the condition is what held.
    assert_eq!(hits("1"), 1, "{gdb}");
    assert!(hits("2") >= 5, "{gdb}");

    // A broken manifest is refused before anything is built into an image, naming the file
    // and the field, as for the apps in the tree.
    let manifest = dir.join("app.toml");
    let text = fs::read_to_string(&manifest).unwrap().replace("priority = 1", "priority = 300");
    fs::write(&manifest, text).unwrap();
    let output = xtask().args(["run", "--app", app]).stdin(Stdio::null()).output().unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(message.contains("weather/app.toml") && message.contains("priority"), "{message}");
}

/// The scripted debugging session (after `debug.gdb`): breakpoint 1 is app-scoped at the
/// entry every app shares, 2 the same address unconditional (counting, never stopping), 3
/// hello's `main`, 4 a kernel function reached after several apps ended.
const GDB_SESSION: &str = "\
target remote 127.0.0.1:PORT
septa-break *0x10000
break *0x10000
ignore 2 1000000
septa-break hello::main
break septa_kernel::system::Kernel<kernel::arch::machine::Armv7>::end<kernel::arch::machine::Armv7>
ignore 4 3
continue
continue
bt
next
next
info locals
printf \"mode = %#x\\n\", $cpsr & 0x1f
continue
info breakpoints
kill
";

#[test]
fn vscode_files_parse_and_name_commands_that_exist() {
    let parent = std::env::temp_dir().join(format!("septa-vscode-{}", std::process::id()));
    let _ = fs::remove_dir_all(&parent);
    let app = parent.join("gauge");
    let output = septa().arg("new").arg(&app).arg("--septa").arg(checkout()).output().unwrap();
    assert!(output.status.success(), "septa new: {}", String::from_utf8_lossy(&output.stderr));
    for dir in [checkout().join(".vscode"), app.join(".vscode")] {
        for file in ["settings.json", "extensions.json", "tasks.json", "launch.json"] {
            let path = dir.join(file);
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let json: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for task in json["tasks"].as_array().into_iter().flatten() {
                let args: Vec<&str> =
                    task["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
                assert_eq!(task["command"], "cargo", "{}", path.display());
                if args[0] == "xtask" {
                    // The xtask subcommand and its options exist: `--help` after them parses.
                    let args: Vec<&str> = args[1..]
                        .iter()
                        .map(|a| if a.starts_with("${") { "." } else { a })
                        .chain(["--help"])
                        .collect();
                    let status = xtask().args(&args).stdout(Stdio::null()).status().unwrap();
                    assert!(status.success(), "{}: cargo xtask {}", path.display(), args.join(" "));
                }
            }
            for configuration in json["configurations"].as_array().into_iter().flatten() {
                let debugger = configuration["miDebuggerPath"].as_str().unwrap();
                let status = Command::new(debugger).arg("--version").stdout(Stdio::null()).status();
                assert!(status.is_ok_and(|s| s.success()), "{}: {debugger}", path.display());
            }
        }
    }
}
