//! Processor modes, decoded from the mode field of a CPSR or SPSR value.

/// The processor mode named by `psr[4:0]`, as the short name the stage lines print.
pub fn mode_name(psr: u32) -> &'static str {
    match psr & 0x1f {
        0x10 => "usr",
        0x11 => "fiq",
        0x12 => "irq",
        0x13 => "svc",
        0x16 => "mon",
        0x17 => "abt",
        0x1a => "hyp",
        0x1b => "und",
        0x1f => "sys",
        _ => "invalid",
    }
}

/// The line each boot stage prints when it takes over:
/// `septa: <stage> <version> <secure|non-secure> <mode>`.
pub fn write_stage_line(
    out: &mut impl core::fmt::Write,
    stage: &str,
    secure: bool,
    psr: u32,
) -> core::fmt::Result {
    let world = if secure { "secure" } else { "non-secure" };
    writeln!(out, "septa: {stage} {} {world} {}", env!("CARGO_PKG_VERSION"), mode_name(psr))
}

pub const MODE_USR: u32 = 0x10;
pub const MODE_SVC: u32 = 0x13;
pub const MODE_MON: u32 = 0x16;
/// CPSR mask bits: asynchronous abort, IRQ and FIQ disabled.
pub const MASK_AIF: u32 = 0x1c0;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn stage_line_format() {
        let mut line = std::string::String::new();
        write_stage_line(&mut line, "kernel", false, 0x1d3).unwrap();
        assert_eq!(line, std::format!("septa: kernel {} non-secure svc\n", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn decodes_the_modes_the_boot_uses() {
        assert_eq!(mode_name(0x4000_01d3), "svc");
        assert_eq!(mode_name(0x1d6), "mon");
        assert_eq!(mode_name(0x10), "usr");
        assert_eq!(mode_name(0x00), "invalid");
    }
}
