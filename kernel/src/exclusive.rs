//! The kernel's state, held by one trap at a time without atomic instructions.
//!
//! The kernel runs on one core with interrupts masked from exception entry until it
//! returns to user mode, so two traps never hold the kernel at once: a lock with exclusive
//! loads, stores and barriers would guard against nothing. A plain flag is kept only to stop
//! the one way it could happen — a kernel bug that takes the kernel while holding it.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering, compiler_fence};

pub struct Exclusive<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: one core, interrupts masked while the value is held (module note), and `lock`
// refuses a second holder, so at most one reference to the value exists at any time.
unsafe impl<T> Sync for Exclusive<T> {}

impl<T> Exclusive<T> {
    pub const fn new(value: T) -> Exclusive<T> {
        Exclusive { held: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// The value, until the returned guard is dropped. Panics (a kernel bug) if it is
    /// already held.
    pub fn lock(&self) -> Held<'_, T> {
        assert!(!self.held.load(Ordering::Relaxed), "the kernel was taken while held");
        self.held.store(true, Ordering::Relaxed);
        // Plain loads and stores, kept by the compiler inside the held section.
        compiler_fence(Ordering::Acquire);
        Held(self)
    }
}

pub struct Held<'a, T>(&'a Exclusive<T>);

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        compiler_fence(Ordering::Release);
        self.0.held.store(false, Ordering::Relaxed);
    }
}

impl<T> Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `lock` made this guard the only holder until it is dropped.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.0.value.get() }
    }
}
