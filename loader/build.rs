use septa_targets::{board, build::link_stage};

fn main() {
    link_stage(board::NAME, "loader.ld", board::LOADER_MEMORY);
}
