//! `cargo xtask bench`: Septa's benchmark apps under QEMU, and the Linux peer.
//!
//! Septa is measured twice from one image: with `-icount shift=0,sleep=off` (one guest
//! nanosecond per instruction, so the PMU cycle counter counts instructions: path lengths,
//! identical run to run) and without icount (host time, noisy). The Linux peer
//! (`bench/linux/run.sh`) prints the same `BENCH` lines with a `linux_` prefix.

use crate::profile::{Profiler, Segment, Symbols};
use crate::{images, setup, variants};
use anyhow::{Context, Result, bail};
use septa_qemu::{Board, Config, Images, Network};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `name -> (value, unit)`.
type Results = BTreeMap<String, (u64, String)>;

pub fn run(root: &Path, json: Option<&Path>, linux: bool) -> Result<()> {
    setup::ensure_qemu()?;
    let spec = variants::bench_image(root)?;
    images::build(root, std::slice::from_ref(&spec))?;
    let dir = images::image_dir(root).join(&spec.dir);
    println!("xtask: running the Septa benchmarks (icount: instructions)");
    let septa = boot_and_collect(&dir, true)?;
    println!("xtask: running the Septa benchmarks again without icount (wall time, noisy)");
    let wall = boot_and_collect(&dir, false)?;
    println!("xtask: running the network benchmarks (icount: instructions)");
    let mut septa = septa;
    septa.extend(network(root)?);
    let peer = if linux { linux_peer(root)? } else { Results::new() };
    print_table(&septa, &wall, &peer);
    if let Some(path) = json {
        std::fs::write(path, to_json(&septa, &wall, &peer))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("xtask: wrote {}", path.display());
    }
    Ok(())
}

fn boot_and_collect(dir: &Path, icount: bool) -> Result<Results> {
    let config = Config { icount, throwaway: true, ..Config::new(Board::QemuVirt, Images::in_dir(dir)) };
    // The bench app's figures, and the memory the kernel of a bench build reports at boot.
    let mut results = collect(&config, &["[bench] BENCH ", "septa: kernel: BENCH "])?;
    if results.is_empty() {
        bail!("the benchmark app printed no results");
    }
    results.extend(kernel_static_memory(&dir.join(images::SYMBOLS_DIR).join("kernel.elf"))?);
    Ok(results)
}

/// The kernel's static RAM, from its ELF file: the image from `__image_start` to
/// `__image_end` (code, constants, data, bss with the heap area and the tables, stacks).
fn kernel_static_memory(elf: &Path) -> Result<Results> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let file = object::File::parse(&*bytes).with_context(|| format!("{}: not an ELF file", elf.display()))?;
    let symbol = |name: &str| file.symbols().find(|s| s.name() == Ok(name)).map(|s| s.address());
    let (Some(start), Some(end)) = (symbol("__image_start"), symbol("__image_end")) else {
        bail!("{}: no __image_start/__image_end", elf.display());
    };
    let section = |name: &str| file.section_by_name(name).map_or(0, |s| s.size());
    // The largest static whose demangled path ends with `suffix`.
    let largest = |suffix: &str| {
        file.symbols()
            .filter(|s| {
                s.name().is_ok_and(|n| format!("{:#}", rustc_demangle::demangle(n)).ends_with(suffix))
            })
            .map(|s| s.size())
            .max()
            .unwrap_or(0)
    };
    let detail = format!(
        "bytes: code {}, constants {}, data {} (the kernel state with the process table {}), bss {} \
         (heap area {}, translation tables {}), stacks {}",
        section(".text"),
        section(".rodata") + section(".ARM.exidx"),
        section(".data"),
        largest("::KERNEL"),
        section(".bss"),
        largest("::HEAP_AREA"),
        largest("mmu::TABLES"),
        section(".stacks"),
    );
    Ok(Results::from([("mem_kernel_static".to_string(), (end - start, detail))]))
}

/// `cargo xtask bench --profile [BENCH]`: boots the bench image once under QEMU with its
/// execution log (`-d in_asm,exec,nochain`, icount as for the figures) and prints, for boot
/// and for each measured phase whose name starts with `only`, the functions that executed
/// the most instructions (see `profile.rs`); every function of every phase goes to
/// `target/bench/profile.txt`.
pub fn profile(root: &Path, only: &str, top: usize) -> Result<()> {
    setup::ensure_qemu()?;
    let spec = variants::bench_image(root)?;
    images::build(root, std::slice::from_ref(&spec))?;
    let dir = images::image_dir(root).join(&spec.dir);
    let symbols = Symbols::load_dir(&dir.join(images::SYMBOLS_DIR))?;
    let config =
        Config { icount: true, throwaway: true, ..Config::new(Board::QemuVirt, Images::in_dir(&dir)) };
    println!("xtask: running the benchmarks once with QEMU's execution log (slower: a few minutes)");
    let log_args = ["-d", "in_asm,exec,nochain"].map(String::from);
    let mut child = config
        .command(&log_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", septa_qemu::binary().display()))?;
    let log = child.stderr.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let (phases, results) = std::thread::scope(|scope| -> Result<_> {
        let reader = scope.spawn(|| -> Result<Vec<Segment>> {
            let mut profiler = Profiler::new(&symbols);
            let mut reader = BufReader::with_capacity(1 << 20, log);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                profiler.line(line.trim_end());
                line.clear();
            }
            Ok(profiler.segments)
        });
        // Serial: the phases' names and operation counts, and the figures.
        let (mut phases, mut results) = (Vec::new(), Results::new());
        let deadline = Instant::now() + Duration::from_secs(3600);
        for line in BufReader::new(stdout).lines() {
            let line = line?.replace('\r', "");
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("[bench] PROFILE ") {
                let mut parts = rest.split(' ');
                if let (Some(name), Some(Ok(ops))) = (parts.next(), parts.next().map(str::parse::<u64>)) {
                    phases.push((name.to_string(), ops));
                }
            } else if let Some(rest) = line.strip_prefix("[bench] BENCH ") {
                if rest == "done" {
                    break;
                }
                println!("xtask: {rest}");
                parse_into(&mut results, rest);
            }
            if Instant::now() > deadline {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let segments = reader.join().map_err(|_| anyhow::anyhow!("the log reader panicked"))??;
        Ok((attribute(segments, &phases), results))
    })?;
    if phases.len() < 2 {
        bail!("the execution log had no phase marks: is `bench` the image's first app?");
    }
    let mut full = String::new();
    for (name, ops, segment) in &phases {
        let bench = results.get(name).map(|(v, _)| *v);
        let text = profile_text(name, *ops, segment, bench, usize::MAX);
        full.push_str(&text);
        if name.starts_with(only) {
            print!("{}", profile_text(name, *ops, segment, bench, top));
        }
    }
    let path = root.join("target/bench/profile.txt");
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(&path, full).with_context(|| format!("writing {}", path.display()))?;
    println!("xtask: every function of every phase: {}", path.display());
    Ok(())
}

/// Names the segments the marks cut: the first is boot (one operation); after it, gaps (the
/// app's reports, left out) alternate with the phases the app announced.
fn attribute(segments: Vec<Segment>, phases: &[(String, u64)]) -> Vec<(String, u64, Segment)> {
    let mut segments = segments.into_iter();
    let mut named = Vec::new();
    if let Some(boot) = segments.next() {
        named.push(("boot_to_first_app".to_string(), 1, boot));
    }
    for ((name, ops), segment) in phases.iter().zip(segments.skip(1).step_by(2)) {
        named.push((name.clone(), *ops, segment));
    }
    named
}

/// A phase's profile: its total, per image, then its `top` functions, per operation.
fn profile_text(name: &str, ops: u64, segment: &Segment, bench: Option<u64>, top: usize) -> String {
    use std::fmt::Write;
    let total = segment.total();
    let ops = ops.max(1);
    let mut text =
        format!("\n{name}: {} instructions per operation over {ops} operations", grouped(total / ops));
    if let Some(bench) = bench {
        let _ = write!(text, " (the benchmark's own figure: {})", grouped(bench));
    }
    text.push('\n');
    let images: Vec<String> = segment
        .by_image()
        .iter()
        .map(|(image, n)| format!("{image} {:.1} %", *n as f64 * 100.0 / total.max(1) as f64))
        .collect();
    let _ = writeln!(text, "  by image: {}", images.join(", "));
    let _ = writeln!(text, "  {:>12} {:>7}  {:<12} function", "per op", "%", "image");
    for ((image, function), count) in segment.ranked().into_iter().take(top) {
        let share = count as f64 * 100.0 / total.max(1) as f64;
        let per_op = count as f64 / ops as f64;
        let _ = writeln!(text, "  {per_op:>12.1} {share:>6.1}%  {image:<12} {function}");
    }
    text
}

/// `1234567` as `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// TCP through the network service: `netbench` against [`servers`].
fn network(root: &Path) -> Result<Results> {
    let spec = variants::net_bench_image(root)?;
    images::build(root, std::slice::from_ref(&spec))?;
    let tls = crate::tls_demo::start(&images::keys_dir(&images::image_dir(root)), &[])?;
    let network = servers(&crate::build_septa_tool(root)?)?.relay(8443, &crate::build_septa_tool(root)?, tls);
    let images = Images::in_dir(&images::image_dir(root).join(&spec.dir));
    let config = Config {
        icount: true,
        throwaway: true,
        network: Some(network),
        ..Config::new(Board::QemuVirt, images)
    };
    let results = collect(&config, &["[netbench] BENCH "])?;
    if results.is_empty() {
        bail!("the network benchmark printed no results");
    }
    Ok(results)
}

/// The host side of the TCP benchmarks, on loopback, forwarded through `septa relay`:
/// devhost:10 sends 1 MiB, devhost:11 takes 1 MiB, devhost:7 echoes.
fn servers(septa: &Path) -> Result<Network> {
    use std::io::{Read, Write};
    let serve = |handle: fn(std::net::TcpStream)| -> Result<std::net::SocketAddr> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || handle(stream));
            }
        });
        Ok(address)
    };
    let source = serve(|mut s| {
        let _ = s.write_all(&vec![0x3c; 1 << 20]);
    })?;
    let sink = serve(|mut s| {
        let (mut total, mut buffer) = (0, vec![0u8; 64 * 1024]);
        while total < 1 << 20 {
            match s.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })?;
    let echo = serve(|mut s| {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n) = s.read(&mut buffer) {
            if n == 0 || s.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
    })?;
    Ok(Network::default().relay(10, septa, source).relay(11, septa, sink).relay(7, septa, echo))
}

/// Boots `config` and gathers its `<prefix><name> <value> <unit>` lines (any of `prefixes`)
/// until the guest prints `<prefix>done`, QEMU exits, or the hang guard fires.
fn collect(config: &Config, prefixes: &[&str]) -> Result<Results> {
    let mut child = config
        .command(&[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", septa_qemu::binary().display()))?;
    let stdout = child.stdout.take().expect("piped");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut results = Results::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?.replace('\r', "");
        if let Some(rest) = prefixes.iter().find_map(|p| line.trim().strip_prefix(p)) {
            if rest == "done" {
                break;
            }
            parse_into(&mut results, rest);
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(results)
}

/// Parses `<name> <value> <unit>`.
fn parse_into(results: &mut Results, line: &str) {
    let mut parts = line.splitn(3, ' ');
    if let (Some(name), Some(Ok(value)), Some(unit)) =
        (parts.next(), parts.next().map(str::parse), parts.next())
    {
        results.insert(name.to_string(), (value, unit.to_string()));
    }
}

/// Builds the Linux peer (`bench/linux/run.sh`) and boots it with the same command-line
/// builder and icount setting as Septa.
fn linux_peer(root: &Path) -> Result<Results> {
    let script = root.join("bench/linux/run.sh");
    println!(
        "xtask: preparing the Linux peer (bench/linux/run.sh; the first run downloads and installs what it needs)"
    );
    let status = Command::new("bash").arg(&script).status().context("running bench/linux/run.sh")?;
    if !status.success() {
        bail!("bench/linux/run.sh failed (see its messages above); `cargo xtask bench --no-linux` skips it");
    }
    println!("xtask: booting the Linux peer under QEMU with icount (as Septa)");
    let images = Images::linux_peer_in_dir(&root.join("target/bench/linux"));
    // The same servers, forwards and card as Septa's network benchmarks.
    let network = Some(servers(&crate::build_septa_tool(root)?)?);
    let results = collect(
        &Config { icount: true, network, ..Config::new(Board::LinuxPeer, images) },
        &["BENCH linux_"],
    )?;
    if results.is_empty() {
        bail!("the Linux peer printed no results");
    }
    Ok(results)
}

/// A metric's goal (issue 20 and DESIGN.md) and seL4's figure on this QEMU (DESIGN.md).
struct Goal {
    metric: &'static str,
    /// At most this many (instructions, or bytes).
    at_most: Option<u64>,
    /// At most Linux's figure for the same metric.
    linux_or_less: bool,
    sel4: &'static str,
}

const GOALS: &[Goal] = &[
    Goal { metric: "boot_to_first_app", at_most: Some(40_000_000), linux_or_less: false, sel4: "-" },
    Goal { metric: "null_syscall", at_most: Some(80), linux_or_less: false, sel4: "-" },
    Goal { metric: "ipc_roundtrip", at_most: Some(300), linux_or_less: false, sel4: "339" },
    Goal { metric: "ipc_roundtrip_64", at_most: Some(500), linux_or_less: false, sel4: "1631 (40 B)" },
    Goal { metric: "ctx_switch", at_most: Some(250), linux_or_less: false, sel4: "285" },
    Goal { metric: "monitor_call", at_most: Some(1_200), linux_or_less: false, sel4: "-" },
    Goal { metric: "sha256_4k", at_most: Some(38 * 4096), linux_or_less: false, sel4: "-" },
    Goal { metric: "ecdsa_sign", at_most: Some(4_860_000), linux_or_less: false, sel4: "-" },
    Goal { metric: "ecdsa_verify", at_most: Some(8_150_000), linux_or_less: false, sel4: "-" },
    Goal { metric: "tcp_recv_per_kib", at_most: None, linux_or_less: true, sel4: "-" },
    Goal { metric: "tcp_send_per_kib", at_most: None, linux_or_less: true, sel4: "-" },
];

/// `(goal, met)` for `name` at `value`, with Linux's figure `linux`: "-" where there is none.
fn judge(name: &str, value: u64, linux: Option<u64>) -> (String, String) {
    let Some(goal) = GOALS.iter().find(|g| g.metric == name) else {
        return ("-".into(), "-".into());
    };
    let limit = match (goal.at_most, goal.linux_or_less) {
        (Some(limit), _) => Some(limit),
        (None, true) => linux,
        (None, false) => None,
    };
    match limit {
        Some(limit) => {
            let shown =
                if goal.at_most.is_some() { grouped(limit) } else { format!("Linux: {}", grouped(limit)) };
            (format!("<= {shown}"), if value <= limit { "met" } else { "MISSED" }.into())
        }
        None => ("<= Linux".into(), "-".into()),
    }
}

/// The table: every figure of one run, Linux's and seL4's beside it, the goal and whether it
/// is met; then the memory figures.
fn print_table(septa: &Results, wall: &Results, linux: &Results) {
    println!();
    println!(
        "{:<22} {:>14} {:>14} {:>12} {:>12} {:>16} {:>7} {:>14}",
        "metric", "Septa", "Linux 6.1", "Linux/Septa", "seL4", "goal", "met", "Septa wall ns"
    );
    for (name, (value, unit)) in septa.iter().filter(|(name, _)| !name.starts_with("mem_")) {
        let peer = linux.get(name).map(|(v, _)| *v);
        let ratio = peer.map_or("-".to_string(), |p| format!("{:.1}x", p as f64 / (*value).max(1) as f64));
        let sel4 = GOALS.iter().find(|g| g.metric == name).map_or("-", |g| g.sel4);
        let (goal, met) = judge(name, *value, peer);
        let wall = wall.get(name).map_or("-".to_string(), |(v, _)| grouped(*v));
        println!(
            "{name:<22} {:>14} {:>14} {ratio:>12} {sel4:>12} {goal:>16} {met:>7} {wall:>14}   {unit}",
            grouped(*value),
            peer.map_or("-".to_string(), grouped),
        );
    }
    println!();
    println!("memory (kernel: from its ELF and its heap after boot; apps: frames each holds after boot)");
    for (name, (value, unit)) in septa.iter().filter(|(name, _)| name.starts_with("mem_")) {
        println!("{name:<28} {:>10}   {unit}", grouped(*value));
    }
}

fn to_json(septa: &Results, wall: &Results, linux: &Results) -> String {
    let rows: Vec<serde_json::Value> = septa
        .iter()
        .map(|(name, (value, unit))| {
            let peer = linux.get(name).map(|(v, _)| *v);
            let (goal, met) = judge(name, *value, peer);
            serde_json::json!({
                "metric": name,
                "unit": unit,
                "septa": value,
                "septa_wall_ns": wall.get(name).map(|(v, _)| v),
                "linux": peer,
                "sel4": GOALS.iter().find(|g| g.metric == name).map(|g| g.sel4).filter(|s| *s != "-"),
                "goal": Some(goal).filter(|g| g != "-"),
                "met": Some(met).filter(|m| m != "-").map(|m| m == "met"),
            })
        })
        .collect();
    serde_json::to_string_pretty(&rows).expect("JSON values always serialize")
}

/// `cargo xtask bench --service`: the release `septa-service` on a fresh SQLite data
/// directory and (when `SEPTA_TEST_POSTGRES_URL` is set) on PostgreSQL, each driven by
/// `septa-load` with `devices` simulated devices on this machine.
pub fn service(root: &Path, devices: usize) -> Result<()> {
    println!("xtask: building septa-service and septa-load (release)");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "septa-service", "--bins"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building septa-service failed");
    }
    let bin = root.join("target/release");
    let data = std::env::temp_dir().join(format!("septa-bench-{}", std::process::id()));
    let mut results = Results::new();
    let mut databases = vec![("sqlite", vec!["--data".to_string(), data.display().to_string()])];
    match std::env::var("SEPTA_TEST_POSTGRES_URL") {
        Ok(url) => databases.push(("postgres", vec!["--database".to_string(), url])),
        Err(_) => println!("xtask: SEPTA_TEST_POSTGRES_URL is not set: the PostgreSQL run is skipped"),
    }
    // The factory CA the simulated devices' first client certificates come from.
    let factory = std::env::temp_dir().join(format!("septa-bench-factory-{}", std::process::id()));
    let status = Command::new(bin.join("septa-load")).arg("--write-factory-ca").arg(&factory).status()?;
    if !status.success() {
        bail!("septa-load could not write a factory CA");
    }
    for (name, db) in databases {
        println!("xtask: {devices} simulated devices against septa-service on {name}");
        let tenant = format!("bench-{}-{}", std::process::id(), name);
        let output =
            Command::new(bin.join("septa-service")).args(&db).args(["create-tenant", &tenant]).output()?;
        if !output.status.success() {
            bail!("create-tenant: {}", String::from_utf8_lossy(&output.stderr));
        }
        let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let mut service = Command::new(bin.join("septa-service"))
            .args(&db)
            .args(["--listen", "127.0.0.1:0", "--device-listen", "127.0.0.1:0", "--device-ca"])
            .arg(factory.with_extension("der"))
            .stdout(Stdio::piped())
            .spawn()
            .context("starting septa-service")?;
        let mut lines = BufReader::new(service.stdout.take().expect("piped")).lines();
        let first = lines.next().context("septa-service printed nothing")??;
        let url =
            first.split("on ").nth(1).and_then(|r| r.split(' ').next()).context("no address")?.to_string();
        let second = lines.next().context("septa-service printed no device port")??;
        let device_url = second
            .strip_prefix("septa-service: device protocol over TLS on ")
            .context("no device port")?
            .trim()
            .replace("127.0.0.1", "https://localhost");
        let load = Command::new(bin.join("septa-load"))
            .arg("--factory-ca")
            .arg(factory.with_extension("json"))
            .args([
                "--device-url",
                &device_url,
                "--url",
                &url,
                "--token",
                &token,
                "--devices",
                &devices.to_string(),
                "--label",
                &format!("service_{name}"),
            ])
            .stderr(Stdio::inherit())
            .output()
            .context("running septa-load");
        let _ = service.kill();
        let _ = service.wait();
        let load = load?;
        if !load.status.success() {
            bail!("septa-load failed on {name}");
        }
        for line in String::from_utf8_lossy(&load.stdout).lines() {
            if let Some(rest) = line.strip_prefix("BENCH ") {
                println!("{line}");
                parse_into(&mut results, rest);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(factory.with_extension("json"));
    let _ = std::fs::remove_file(factory.with_extension("der"));
    println!();
    for (name, (value, unit)) in &results {
        println!("{name:<32} {value:>10} {unit}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_are_judged_against_their_limit_or_linux() {
        assert_eq!(judge("monitor_call", 1_183, None), ("<= 1,200".into(), "met".into()));
        assert_eq!(judge("null_syscall", 114, Some(135)), ("<= 80".into(), "MISSED".into()));
        assert_eq!(
            judge("tcp_recv_per_kib", 26_379, Some(4_483)),
            ("<= Linux: 4,483".into(), "MISSED".into())
        );
        assert_eq!(judge("tcp_recv_per_kib", 26_379, None), ("<= Linux".into(), "-".into()));
        assert_eq!(judge("tls_mutual_handshake", 1, None), ("-".into(), "-".into()));
    }

    #[test]
    fn profile_segments_are_boot_then_phases_between_gaps() {
        let segment = |n: u64| {
            let mut s = Segment::default();
            s.counts.insert(("kernel".into(), "f".into()), n);
            s
        };
        let segments = (1..=6).map(segment).collect();
        let phases = [("a".to_string(), 10), ("b".to_string(), 20)];
        let named: Vec<(String, u64, u64)> =
            attribute(segments, &phases).into_iter().map(|(n, ops, s)| (n, ops, s.total())).collect();
        assert_eq!(named, [("boot_to_first_app".into(), 1, 1), ("a".into(), 10, 3), ("b".into(), 20, 5)]);
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(71_249_296), "71,249,296");
    }
}
