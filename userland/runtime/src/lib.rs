//! The runtime every Septa app links: its entry point and its panic handler.
//!
//! The kernel starts an app at `_start` in user mode with the stack pointer at the top of
//! the app's stack. `_start` calls the function the app named with [`entry!`] and exits with
//! status 0 when it returns; a panic logs its message and location and exits with
//! [`PANIC_EXIT_CODE`], so the kernel (and later the supervisor) sees the failure.
//!
//! With the `heap` feature, [`heap!`] gives an app a global allocator over an area of its
//! own memory (counted in its `memory-kib` like any other data), so apps that need `alloc`
//! share one allocator instead of each rolling its own.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use septa_syscalls as sys;

#[cfg(feature = "heap")]
pub mod heap;

/// The exit status of an app that panicked.
pub const PANIC_EXIT_CODE: i32 = 101;

/// Names the app's main function: `septa_runtime::entry!(main);`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn septa_app_main() {
            $main()
        }
    };
}

unsafe extern "Rust" {
    fn septa_app_main();
}

/// The app's first instruction.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.start")]
pub extern "C" fn _start() -> ! {
    // SAFETY: `septa_app_main` is defined by the app through `entry!`, with this signature.
    unsafe { septa_app_main() };
    sys::exit(0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => sys::log!("panic at {}:{}: {}", at.file(), at.line(), info.message()),
        None => sys::log!("panic: {}", info.message()),
    }
    sys::exit(PANIC_EXIT_CODE)
}
