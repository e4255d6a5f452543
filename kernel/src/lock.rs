//! The one lock around the kernel's state, for one core that runs the kernel with interrupts
//! masked: every trap takes it once and releases it before resuming a process, so it is
//! never contended and needs no atomic instruction — a plain flag, which only catches a
//! kernel bug (the kernel entering itself) by panicking.

use core::cell::{Cell, UnsafeCell};
use core::ops::{Deref, DerefMut};

pub struct KernelLock<T> {
    taken: Cell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY: one core, and the kernel runs with IRQs masked from every exception entry to the
// return to user mode, so no two contexts ever run kernel code at once; `lock` checks the
// flag anyway, so even a kernel bug cannot create two guards.
unsafe impl<T: Send> Sync for KernelLock<T> {}

impl<T> KernelLock<T> {
    pub const fn new(value: T) -> KernelLock<T> {
        KernelLock { taken: Cell::new(false), value: UnsafeCell::new(value) }
    }

    pub fn lock(&self) -> KernelGuard<'_, T> {
        assert!(!self.taken.replace(true), "the kernel entered itself");
        KernelGuard { lock: self }
    }
}

/// Access to the kernel's state until dropped.
pub struct KernelGuard<'a, T> {
    lock: &'a KernelLock<T>,
}

impl<T> Deref for KernelGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the flag was clear when this guard was made and stays set until it drops,
        // so this guard is the only way to the value.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for KernelGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for KernelGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.taken.set(false);
    }
}
