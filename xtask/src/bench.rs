//! `cargo xtask bench`: Septa's benchmark apps under QEMU, and the Linux peer.
//!
//! Septa is measured twice from one image: with `-icount shift=0,sleep=off` (one guest
//! nanosecond per instruction, so the PMU cycle counter counts instructions: path lengths,
//! identical run to run) and without icount (host time, noisy). The Linux peer
//! (`bench/linux/run.sh`) prints the same `BENCH` lines with a `linux_` prefix.

use crate::{images, setup, variants};
use anyhow::{Context, Result, bail};
use septa_qemu::{Board, Config, Images, QEMU};
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
    let config = Config {
        board: Board::QemuVirt,
        images: Images::in_dir(dir),
        interactive: false,
        icount,
        throwaway: true,
        monitor_socket: None,
        inbox: None,
    };
    let mut child = Command::new(QEMU)
        .args(config.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting QEMU")?;
    let stdout = child.stdout.take().expect("piped");
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut results = Results::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?.replace('\r', "");
        if let Some(rest) = line.strip_prefix("[bench] BENCH ") {
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
    if results.is_empty() {
        bail!("the benchmark app printed no results");
    }
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

fn linux_peer(root: &Path) -> Result<Results> {
    let script = root.join("bench/linux/run.sh");
    println!(
        "xtask: running the Linux peer (bench/linux/run.sh; the first run downloads and installs what it needs)"
    );
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .context("running the Linux peer")?;
    if !output.status.success() {
        bail!("bench/linux/run.sh failed (see its messages above); `cargo xtask bench --no-linux` skips it");
    }
    let mut results = Results::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(rest) = line.trim().strip_prefix("BENCH linux_") {
            parse_into(&mut results, rest);
        }
    }
    Ok(results)
}

fn print_table(septa: &Results, wall: &Results, linux: &Results) {
    println!();
    println!(
        "{:<20} {:>14} {:>14} {:>12} {:>16}",
        "metric", "Septa", "Linux", "Linux/Septa", "Septa wall (ns)"
    );
    for (name, (value, unit)) in septa {
        let peer = linux.get(name).map(|(v, _)| *v);
        let ratio = peer.map_or("-".to_string(), |p| format!("{:.1}x", p as f64 / (*value).max(1) as f64));
        let wall = wall.get(name).map_or("-".to_string(), |(v, _)| v.to_string());
        println!(
            "{name:<20} {value:>14} {:>14} {ratio:>12} {wall:>16}   {unit}",
            peer.map_or("-".to_string(), |p| p.to_string())
        );
    }
}

fn to_json(septa: &Results, wall: &Results, linux: &Results) -> String {
    let rows: Vec<serde_json::Value> = septa
        .iter()
        .map(|(name, (value, unit))| {
            serde_json::json!({
                "metric": name,
                "unit": unit,
                "septa": value,
                "septa_wall_ns": wall.get(name).map(|(v, _)| v),
                "linux": linux.get(name).map(|(v, _)| v),
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
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting septa-service")?;
        let mut lines = BufReader::new(service.stdout.take().expect("piped")).lines();
        let first = lines.next().context("septa-service printed nothing")??;
        let url =
            first.split("on ").nth(1).and_then(|r| r.split(' ').next()).context("no address")?.to_string();
        let load = Command::new(bin.join("septa-load"))
            .args([
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
    println!();
    for (name, (value, unit)) in &results {
        println!("{name:<32} {value:>10} {unit}");
    }
    Ok(())
}
