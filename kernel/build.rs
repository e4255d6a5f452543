use septa_targets::{board, build::link_stage};

fn main() {
    link_stage(board::NAME, "ram-stage.ld", board::KERNEL_MEMORY);
}
