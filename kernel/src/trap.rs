//! Where the exception entry code lands: syscalls, interrupts and faults, each ending in
//! the scheduler and a return to user mode (or the idle loop).

use crate::KERNEL;
use crate::arch::{Context, entry};
use crate::console::console;
use crate::monitor;
use septa_abi::exit;
use septa_armv7::crash::{self, ExceptionKind, FaultRegisters, Interrupted};
use septa_armv7::regs;
use septa_kernel::syscall::After;
use septa_kernel::system::{Ending, UserFault};

/// `call` or `reply_recv` from a process: the IPC fast path resumes the partner, or leaves
/// the call, nothing changed, to [`kernel_syscall`]. (It never returns, so it saves none of
/// the registers it uses.)
#[unsafe(no_mangle)]
extern "C" fn kernel_fast_ipc() -> ! {
    let mut kernel = KERNEL.lock();
    let pid = kernel.current.expect("a syscall comes from the current process");
    if let Some(partner) = kernel.fast_ipc(pid) {
        drop(kernel);
        resume_or_idle(Some(partner))
    }
    drop(kernel);
    kernel_syscall()
}

/// `svc #0` from a process, unless the fast path took it: the number (r7) and arguments
/// (r0–r5, r8) are in its saved registers. Then the caller again, or the scheduler's choice.
#[unsafe(no_mangle)]
extern "C" fn kernel_syscall() -> ! {
    let mut kernel = KERNEL.lock();
    let pid = kernel.current.expect("a syscall comes from the current process");
    if matches!(kernel.syscall(pid), After::Continue)
        && let Some(context) = kernel.may_keep(pid)
    {
        drop(kernel);
        // SAFETY: the context of `pid`, the live and ready process that made this syscall
        // and still has the CPU (its address space installed, nothing ran since its trap).
        unsafe { entry::resume_caller(context) }
    }
    let next = kernel.schedule(false);
    drop(kernel);
    resume_or_idle(next)
}

/// An IRQ taken in user mode.
#[unsafe(no_mangle)]
extern "C" fn kernel_irq() -> ! {
    let mut kernel = KERNEL.lock();
    let running = kernel.current;
    let slice_over = kernel.handle_interrupts(running);
    let next = kernel.schedule(!slice_over);
    drop(kernel);
    resume_or_idle(next)
}

/// An undefined instruction or abort in user mode: the process's fault, not the kernel's.
#[unsafe(no_mangle)]
extern "C" fn kernel_user_fault(kind: u32, context: &Context) -> ! {
    let fault =
        UserFault { kind: ExceptionKind::from_u32(kind), pc: context.pc, faults: FaultRegisters::read() };
    let mut kernel = KERNEL.lock();
    let pid = kernel.current.expect("a user fault comes from the current process");
    kernel.end(pid, Ending::Fault(fault));
    let next = kernel.schedule(false);
    drop(kernel);
    resume_or_idle(next)
}

/// An undefined instruction or abort in the kernel itself: a kernel bug.
#[unsafe(no_mangle)]
extern "C" fn kernel_mode_fault(kind: u32, context: &Context) -> ! {
    let kind = ExceptionKind::from_u32(kind);
    let at = Interrupted { pc: context.pc, psr: context.cpsr, regs: &context.r };
    let _ = crash::write_exception_report(&mut console(), "kernel", kind, &at, &FaultRegisters::read());
    monitor::power_off(exit::CRASH)
}

/// Resumes `next` (the common case, without a call), or idles in [`run`].
#[inline(always)]
fn resume_or_idle(next: Option<*const Context>) -> ! {
    if let Some(context) = next {
        // SAFETY: the scheduler (or the IPC fast path) returned the context of a live, ready
        // process in the static process table and installed that process's address space.
        unsafe { entry::resume(context) }
    }
    run(None)
}

/// Resumes `next`, or idles until an interrupt makes a process ready.
pub fn run(mut next: Option<*const Context>) -> ! {
    loop {
        if let Some(context) = next {
            // SAFETY: `schedule` returned the context of a live, ready process in the
            // static process table and installed that process's address space.
            unsafe { entry::resume(context) }
        }
        // Idle: WFI wakes on a pending interrupt even with IRQs masked; handle it here.
        regs::wait_for_interrupt();
        let mut kernel = KERNEL.lock();
        kernel.handle_interrupts(None);
        next = kernel.schedule(false);
    }
}
