//! Exception entry and exit.
//!
//! While a process runs, the Supervisor-mode stack pointer points just past the saved CPSR
//! of that process's [`Context`]. An exception from user mode therefore stores the return
//! address and SPSR (`srsdb`) and the user registers (`stmdb … ^`) straight into the
//! process's context — no copy — adds the user thread-ID register TPIDRURW, and then
//! switches to the single kernel stack. The kernel runs with interrupts
//! masked and never blocks, so every trap starts on an empty kernel stack and ends in
//! [`return_to_user`], which loads a context (perhaps another process's) and leaves with
//! `rfeia`, leaving SP pointing past that context's CPSR for the next trap. The return also
//! loads the process's own TPIDRURW and clears the exclusive monitor, so no register and no
//! pending `ldrex` carries anything from one process to the next — except the return to the
//! very process that trapped, with nothing else run between ([`resume_caller`]), where both
//! are still its own. (TPIDRURO, read-only to
//! user mode, is never written; VFP/NEON stay disabled, so their registers do not exist for
//! apps.)
//!
//! IRQs and SVCs only ever come from user mode (the kernel masks IRQs and idles with WFI
//! while masked). Undefined instructions and aborts from the kernel itself are kernel bugs:
//! they go to the crash report.

use septa_kernel::machine::Context;

core::arch::global_asm!(
    r#"
    .section .text.kernel_vectors, "ax"
    .arm
    .balign 32
    .global kernel_vectors
kernel_vectors:
    b septa_crash_vectors + 0
    b kernel_undef_entry
    b kernel_svc_entry
    b kernel_pabt_entry
    b kernel_dabt_entry
    b septa_crash_vectors + 20
    b kernel_irq_entry
    b septa_crash_vectors + 28

    @ Save the interrupted user context at SP_svc (the end of the current Context).
    .macro save_user_context
        stmdb sp, {{r0-r14}}^
        sub sp, sp, #60
    .endm

    @ TPIDRURW into Context.tpidrurw (SP = the context, `scratch` free).
    .macro save_thread_id scratch
        mrc p15, 0, \scratch, c13, c0, 2
        str \scratch, [sp, #68]
    .endm

kernel_svc_entry:
    srsdb sp!, #0x13
    save_user_context
    save_thread_id r0
    ldr sp, =__stack_top
    @ By the number, still in r7: `call` and `reply_recv` to the IPC fast path, which hands
    @ what it does not take to the general path; every other number to the general path
    @ (the table's entries, or the branch after the load for a number past them: the load
    @ reads PC as its own address + 8, where the table starts).
    cmp r7, #{numbers} - 1
    ldrls pc, [pc, r7, lsl #2]
    b kernel_syscall
    .rept {call}
    .word kernel_syscall
    .endr
    .word kernel_fast_ipc
    .rept {reply_recv} - {call} - 1
    .word kernel_syscall
    .endr
    .word kernel_fast_ipc
    .rept {numbers} - {reply_recv} - 1
    .word kernel_syscall
    .endr

kernel_irq_entry:
    sub lr, lr, #4
    srsdb sp!, #0x13
    cps #0x13
    save_user_context
    save_thread_id r0
    ldr sp, =__stack_top
    bl kernel_irq

    @ Undefined instruction and aborts: from user mode they are the process's fault; from
    @ the kernel they are a crash. r0 = exception kind for the handler.
    .macro fault_entry kind, adjust
        sub lr, lr, #\adjust
        srsdb sp!, #0x13
        cps #0x13
        save_user_context
        ldr r0, [sp, #64]
        and r0, r0, #0x1f
        cmp r0, #0x10
        mov r0, #\kind
        mov r1, sp
        bne kernel_mode_fault
        save_thread_id r2
        ldr sp, =__stack_top
        bl kernel_user_fault
    .endm

kernel_undef_entry:
    fault_entry 1, 4
kernel_pabt_entry:
    fault_entry 3, 4
kernel_dabt_entry:
    fault_entry 4, 8

    @ return_to_user(context): resume the process whose Context is at r0.
    .global return_to_user
return_to_user:
    ldr r1, [r0, #68]
    mcr p15, 0, r1, c13, c0, 2
    clrex
    @ return_to_caller(context): the same, for the process that trapped, nothing of another
    @ process run since: its TPIDRURW and exclusive monitor are still its own.
    .global return_to_caller
return_to_caller:
    mov sp, r0
    ldmia sp, {{r0-r14}}^
    add sp, sp, #60
    rfeia sp!
    .ltorg
    .if {tpidrurw} != 68
    .error "Context.tpidrurw moved: fix save_thread_id and return_to_user"
    .endif
"#,
    tpidrurw = const core::mem::offset_of!(Context, tpidrurw),
    call = const septa_syscalls::Syscall::Call as u32,
    reply_recv = const septa_syscalls::Syscall::ReplyRecv as u32,
    numbers = const septa_syscalls::Syscall::COUNT,
);

unsafe extern "C" {
    static kernel_vectors: u8;
    fn return_to_user(context: *const Context) -> !;
    fn return_to_caller(context: *const Context) -> !;
}

/// The kernel's vector table, for VBAR.
pub fn vectors() -> u32 {
    (&raw const kernel_vectors) as u32
}

/// Resumes the process whose saved registers are `context`.
///
/// # Safety
///
/// `context` must point to a `Context` that stays at that address while the process runs
/// (the next exception stores into it), with a user-mode CPSR and the process's address
/// space installed in TTBR0.
#[inline(always)]
pub unsafe fn resume(context: *const Context) -> ! {
    // SAFETY: delegated to the caller.
    unsafe { return_to_user(context) }
}

/// Resumes the process that made the syscall being answered, as [`resume`] does but without
/// loading its TPIDRURW and clearing the exclusive monitor: no other process ran since its
/// trap, so TPIDRURW is still its own (neither the kernel nor the monitor writes it), and
/// whatever exclusive state the kernel or the monitor left (their own `ldrex`/`strex`
/// pairs end with the monitor open) can only make the process's next `strex` fail, never
/// let another process's succeed.
///
/// # Safety
///
/// As for [`resume`], and `context` is that of the process whose trap this is, with nothing
/// of another process run since that trap.
#[inline(always)]
pub unsafe fn resume_caller(context: *const Context) -> ! {
    // SAFETY: delegated to the caller.
    unsafe { return_to_caller(context) }
}
