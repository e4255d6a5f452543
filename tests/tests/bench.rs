//! The benchmark image runs and reports. Benchmarks are not tests: the numbers belong to
//! `cargo xtask bench` and `docs/performance.md`. This only checks that every benchmark
//! runs to the end and prints one well-formed `BENCH <name> <value> <unit>` line.

use septa_tests::{Boot, variant_images};

const METRICS: [(&str, &str); 11] = [
    ("boot_to_first_app", "instructions"),
    ("null_syscall", "instructions"),
    ("ipc_roundtrip", "instructions"),
    ("ipc_roundtrip_64", "instructions"),
    ("ctx_switch", "instructions"),
    ("monitor_call", "instructions"),
    ("sha256_4k", "instructions"),
    ("ecdsa_sign", "instructions"),
    ("ecdsa_verify", "instructions"),
    ("tls_client_sign", "instructions"),
    ("tls_chain_verify", "instructions"),
];

#[test]
fn every_benchmark_prints_one_well_formed_line() {
    let mut qemu = Boot::new(variant_images("bench")).spawn();
    qemu.wait_for("[bench] BENCH done");
    let console = qemu.console();
    let lines: Vec<&str> = console.lines().filter_map(|l| l.strip_prefix("[bench] BENCH ")).collect();
    assert_eq!(lines.len(), METRICS.len() + 1, "one line per metric, then `done`:\n{console}");
    for ((name, unit), line) in METRICS.iter().zip(&lines) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "`{line}` is not `<name> <value> <unit>`");
        assert_eq!((fields[0], fields[2]), (*name, *unit), "in `{line}`");
        let value: u64 = fields[1].parse().unwrap_or_else(|_| panic!("`{line}`: the value is not a number"));
        assert!(value > 0, "`{line}`: a measured cost cannot be zero");
    }
    assert_eq!(lines.last(), Some(&"done"));
    assert!(!console.contains("refused") && !console.contains("fault"), "{console}");
}
