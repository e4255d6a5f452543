//! Decoding of the short-descriptor fault status registers (DFSR and IFSR).
//!
//! The status field is `FS[4] : FS[3:0]` = bits 10 and 3..0 (ARM ARM B4.1.52, table B3-23).

/// The fault status field of a DFSR or IFSR value.
pub fn status(fsr: u32) -> u32 {
    ((fsr >> 6) & 0x10) | (fsr & 0xf)
}

/// A short description of a fault status, for crash and fault reports.
pub fn describe(fsr: u32) -> &'static str {
    match status(fsr) {
        0x01 => "alignment fault",
        0x02 => "debug event",
        0x03 => "access flag fault (section)",
        0x06 => "access flag fault (page)",
        0x04 => "instruction cache maintenance fault",
        0x05 => "translation fault (section)",
        0x07 => "translation fault (page)",
        0x08 => "synchronous external abort",
        0x09 => "domain fault (section)",
        0x0b => "domain fault (page)",
        0x0c | 0x0e => "synchronous external abort on translation table walk",
        0x0d => "permission fault (section)",
        0x0f => "permission fault (page)",
        0x16 => "asynchronous external abort",
        0x19 => "synchronous parity error",
        _ => "unknown fault status",
    }
}

/// Whether a DFSR says the access was a write.
pub fn is_write(dfsr: u32) -> bool {
    dfsr & (1 << 11) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_status_including_bit_10() {
        assert_eq!(status(0x008), 0x08);
        assert_eq!(describe(0x008), "synchronous external abort");
        assert_eq!(describe(0x80f), "permission fault (page)");
        assert!(is_write(0x80f));
        assert_eq!(status(0x406), 0x16);
        assert_eq!(describe(0x406), "asynchronous external abort");
    }
}
