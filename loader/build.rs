use septa_targets::{build::link_stage, qemu_virt};

fn main() {
    link_stage(qemu_virt::NAME, "loader.ld", qemu_virt::LOADER_MEMORY);
}
