use septa_targets::{build::link_stage, qemu_virt};

fn main() {
    link_stage(qemu_virt::NAME, "ram-stage.ld", qemu_virt::MONITOR_MEMORY);
}
