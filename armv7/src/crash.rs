//! Crash reports, and the crash-only vector table the secure stages use.
//!
//! Every stage promises never to hang silently: an unexpected exception or a Rust panic
//! prints a report naming the stage, the exception, the PC, the status registers and the
//! fault registers, and then the stage powers off with [`septa_abi::exit::CRASH`]. The
//! report text is built here, from plain values, so it is the same in every stage and is
//! tested on the host.
//!
//! [`crash_vectors`] is a vector table whose every entry saves the registers into a
//! [`TrapFrame`] on a dedicated crash stack (`__crash_stack_top`, from the stage's linker
//! script) and calls the stage's `septa_crash(kind, frame)`, which must not return.

use crate::fault;
use crate::mode::mode_name;
use core::fmt::{self, Write};

/// The exception that was taken, numbered by its vector offset / 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExceptionKind {
    Reset = 0,
    Undefined = 1,
    SupervisorCall = 2,
    PrefetchAbort = 3,
    DataAbort = 4,
    Hyp = 5,
    Irq = 6,
    Fiq = 7,
}

impl ExceptionKind {
    pub fn from_u32(value: u32) -> ExceptionKind {
        match value {
            1 => ExceptionKind::Undefined,
            2 => ExceptionKind::SupervisorCall,
            3 => ExceptionKind::PrefetchAbort,
            4 => ExceptionKind::DataAbort,
            5 => ExceptionKind::Hyp,
            6 => ExceptionKind::Irq,
            7 => ExceptionKind::Fiq,
            _ => ExceptionKind::Reset,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExceptionKind::Reset => "reset",
            ExceptionKind::Undefined => "undefined instruction",
            ExceptionKind::SupervisorCall => "supervisor call",
            ExceptionKind::PrefetchAbort => "prefetch abort",
            ExceptionKind::DataAbort => "data abort",
            ExceptionKind::Hyp => "hyp trap",
            ExceptionKind::Irq => "IRQ",
            ExceptionKind::Fiq => "FIQ",
        }
    }

    /// The address of the instruction that caused the exception, from the exception's LR
    /// (A32 state; ARM ARM B1.8.3, table B1-7).
    pub fn faulting_pc(self, lr: u32) -> u32 {
        match self {
            ExceptionKind::DataAbort => lr.wrapping_sub(8),
            _ => lr.wrapping_sub(4),
        }
    }
}

/// The registers an exception stub saves, in the order it pushes them.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct TrapFrame {
    pub spsr: u32,
    pub r: [u32; 13],
    /// The exception mode's LR: the return address.
    pub lr: u32,
}

/// Fault status and address registers at the time of the exception.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultRegisters {
    pub dfsr: u32,
    pub dfar: u32,
    pub ifsr: u32,
    pub ifar: u32,
}

impl FaultRegisters {
    /// Reads the current security state's fault registers.
    #[cfg(target_arch = "arm")]
    pub fn read() -> FaultRegisters {
        use crate::regs;
        FaultRegisters {
            dfsr: regs::read_dfsr(),
            dfar: regs::read_dfar(),
            ifsr: regs::read_ifsr(),
            ifar: regs::read_ifar(),
        }
    }
}

/// What a crash report says about the interrupted code.
pub struct Interrupted<'a> {
    /// The address of the instruction that caused the exception.
    pub pc: u32,
    /// The CPSR at the time (the exception's SPSR).
    pub psr: u32,
    /// r0–r12.
    pub regs: &'a [u32; 13],
}

impl TrapFrame {
    pub fn interrupted(&self, kind: ExceptionKind) -> Interrupted<'_> {
        Interrupted { pc: kind.faulting_pc(self.lr), psr: self.spsr, regs: &self.r }
    }
}

/// Writes the fault-register line of a report: DFSR/DFAR for a data abort, IFSR/IFAR for a
/// prefetch abort, nothing for other exceptions.
pub fn write_fault_registers(
    out: &mut impl Write,
    kind: ExceptionKind,
    faults: &FaultRegisters,
) -> fmt::Result {
    match kind {
        ExceptionKind::DataAbort => writeln!(
            out,
            "  dfsr {:#010x} ({}, {})  dfar {:#010x}",
            faults.dfsr,
            fault::describe(faults.dfsr),
            if fault::is_write(faults.dfsr) { "write" } else { "read" },
            faults.dfar
        ),
        ExceptionKind::PrefetchAbort => writeln!(
            out,
            "  ifsr {:#010x} ({})  ifar {:#010x}",
            faults.ifsr,
            fault::describe(faults.ifsr),
            faults.ifar
        ),
        _ => Ok(()),
    }
}

/// Writes the report for an unexpected exception.
pub fn write_exception_report(
    out: &mut impl Write,
    stage: &str,
    kind: ExceptionKind,
    at: &Interrupted<'_>,
    faults: &FaultRegisters,
) -> fmt::Result {
    writeln!(out, "septa: {stage} CRASH: unexpected {}", kind.name())?;
    writeln!(out, "  pc {:#010x}  cpsr {:#010x} ({})", at.pc, at.psr, mode_name(at.psr))?;
    write_fault_registers(out, kind, faults)?;
    for (row, regs) in at.regs.chunks(4).enumerate() {
        write!(out, " ")?;
        for (i, value) in regs.iter().enumerate() {
            write!(out, " r{:<2} {value:#010x}", row * 4 + i)?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Reports an exception taken through [`crash_vectors`]: `kind` and `frame` as the vector
/// stub passes them, the fault registers read now.
#[cfg(target_arch = "arm")]
pub fn report_trap(out: &mut impl Write, stage: &str, kind: u32, frame: &TrapFrame) {
    let kind = ExceptionKind::from_u32(kind);
    let _ = write_exception_report(out, stage, kind, &frame.interrupted(kind), &FaultRegisters::read());
}

/// Writes the report for a Rust panic.
pub fn write_panic_report(
    out: &mut impl Write,
    stage: &str,
    info: &core::panic::PanicInfo<'_>,
) -> fmt::Result {
    write!(out, "septa: {stage} PANIC")?;
    if let Some(location) = info.location() {
        write!(out, " at {}:{}:{}", location.file(), location.line(), location.column())?;
    }
    writeln!(out, ": {}", info.message())
}

/// The address of the crash-only vector table, for VBAR or MVBAR.
#[cfg(target_arch = "arm")]
pub fn crash_vectors() -> u32 {
    unsafe extern "C" {
        static septa_crash_vectors: u8;
    }
    // Only the address of the table is taken; it is never read as data.
    (&raw const septa_crash_vectors) as u32
}

// Each entry loads the crash stack into the (banked) SP of the exception mode — the stage is
// going down, so nothing on the old stack matters — pushes r0-r12 and LR, then the SPSR, and
// calls `septa_crash(kind, frame)`.
#[cfg(target_arch = "arm")]
core::arch::global_asm!(
    r#"
    .macro septa_crash_stub kind
    septa_crash_stub_\kind:
        ldr sp, =__crash_stack_top
        push {{r0-r12, lr}}
        mrs r0, spsr
        push {{r0}}
        mov r0, #\kind
        mov r1, sp
        bl septa_crash
        b .
    .endm

    .section .text.septa_crash_vectors, "ax"
    .arm
    .balign 32
    .global septa_crash_vectors
septa_crash_vectors:
    b septa_crash_stub_0
    b septa_crash_stub_1
    b septa_crash_stub_2
    b septa_crash_stub_3
    b septa_crash_stub_4
    b septa_crash_stub_5
    b septa_crash_stub_6
    b septa_crash_stub_7
    septa_crash_stub 0
    septa_crash_stub 1
    septa_crash_stub 2
    septa_crash_stub 3
    septa_crash_stub 4
    septa_crash_stub 5
    septa_crash_stub 6
    septa_crash_stub 7
    .ltorg
"#
);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    #[test]
    fn data_abort_report_names_pc_status_and_address() {
        let frame = TrapFrame { spsr: 0x6000_01d3, r: [0; 13], lr: 0x4010_0108 };
        let faults = FaultRegisters { dfsr: 0x8, dfar: 0x0e00_0000, ..Default::default() };
        let mut out = String::new();
        let kind = ExceptionKind::DataAbort;
        write_exception_report(&mut out, "kernel", kind, &frame.interrupted(kind), &faults).unwrap();
        assert!(out.starts_with("septa: kernel CRASH: unexpected data abort\n"), "{out}");
        assert!(out.contains("pc 0x40100100  cpsr 0x600001d3 (svc)"), "{out}");
        assert!(out.contains("dfsr 0x00000008 (synchronous external abort, read)"), "{out}");
        assert!(out.contains("dfar 0x0e000000"), "{out}");
        assert!(out.contains("r12 0x00000000"), "{out}");
    }

    #[test]
    fn undefined_instruction_pc_is_lr_minus_4() {
        assert_eq!(ExceptionKind::Undefined.faulting_pc(0x1004), 0x1000);
        assert_eq!(ExceptionKind::from_u32(3), ExceptionKind::PrefetchAbort);
    }
}
