//! `cargo xtask bench`: Septa's benchmark apps under QEMU, and the Linux peer.
//!
//! Septa is measured twice from one image: with `-icount shift=0,sleep=off` (one guest
//! nanosecond per instruction, so the PMU cycle counter counts instructions: path lengths,
//! identical run to run) and without icount (host time, noisy). The Linux peer
//! (`bench/linux/run.sh`) prints the same `BENCH` lines with a `linux_` prefix.

use crate::{images, setup, variants};
use anyhow::{Context, Result, bail};
use septa_qemu::{Board, Config, Images};
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
    let config = Config { icount, throwaway: true, ..Config::new(Board::QemuVirt, Images::in_dir(dir)) };
    let results = collect(&config, "[bench] BENCH ")?;
    if results.is_empty() {
        bail!("the benchmark app printed no results");
    }
    Ok(results)
}

/// Boots `config` and gathers its `<prefix><name> <value> <unit>` lines until the guest
/// prints `<prefix>done`, QEMU exits, or the hang guard fires.
fn collect(config: &Config, prefix: &str) -> Result<Results> {
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
        if let Some(rest) = line.trim().strip_prefix(prefix) {
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
    println!("xtask: booting the Linux peer under QEMU with -icount shift=0,sleep=off");
    let images = Images::linux_peer_in_dir(&root.join("target/bench/linux"));
    let results = collect(&Config { icount: true, ..Config::new(Board::LinuxPeer, images) }, "BENCH linux_")?;
    if results.is_empty() {
        bail!("the Linux peer printed no results");
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
