//! The kernel console: the board's PL011, at its physical address until the MMU is on and
//! in the device window after.

use core::sync::atomic::{AtomicUsize, Ordering};
use septa_armv7::pl011::Pl011;
use septa_targets::board;

static UART_BASE: AtomicUsize = AtomicUsize::new(board::UART0);

/// The console writer.
pub fn console() -> Pl011 {
    // SAFETY: UART_BASE is the PL011's physical address while the MMU is off and its
    // device-window address once `use_virtual_address` ran, right after the MMU came on.
    unsafe { Pl011::new(UART_BASE.load(Ordering::Relaxed)) }
}

/// Switches the console to the UART's address in the kernel's device window.
pub fn use_virtual_address() {
    UART_BASE.store(crate::arch::mmu::device_va(board::UART0), Ordering::Relaxed);
}

/// `println!` to the console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::console::console(), format_args!("{}\n", format_args!($($arg)*)));
    }};
}
