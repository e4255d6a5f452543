use septa_targets::{build::link_stage, qemu_virt, raspi2b};

fn main() {
    if std::env::var_os("CARGO_FEATURE_RASPI2B").is_some() {
        link_stage(raspi2b::NAME, "monitor.ld", raspi2b::MONITOR_MEMORY);
    } else {
        link_stage(qemu_virt::NAME, "monitor.ld", qemu_virt::MONITOR_MEMORY);
    }
}
