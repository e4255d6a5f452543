//! The optional app heap: a linked-list allocator over a fixed area in the app's bss.
//!
//! `septa_runtime::heap!(64 * 1024);` in an app makes `alloc` work; the area is set up on
//! the first allocation. An allocation that does not fit returns null, which `alloc` turns
//! into the app's panic (and so a contained exit), never into corrupted memory.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A heap of `N` bytes.
pub struct Heap<const N: usize> {
    area: UnsafeCell<[u8; N]>,
    heap: linked_list_allocator::LockedHeap,
    ready: AtomicBool,
}

// SAFETY: the area is reached only through `heap`, whose lock serialises every use.
unsafe impl<const N: usize> Sync for Heap<N> {}

impl<const N: usize> Heap<N> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Heap {
            area: UnsafeCell::new([0; N]),
            heap: linked_list_allocator::LockedHeap::empty(),
            ready: AtomicBool::new(false),
        }
    }

    fn heap(&self) -> &linked_list_allocator::LockedHeap {
        if !self.ready.swap(true, Ordering::AcqRel) {
            // SAFETY: runs once (the flag), before any allocation; the area belongs to this
            // heap alone and lives as long as the app.
            unsafe { self.heap.lock().init(self.area.get().cast(), N) };
        }
        &self.heap
    }
}

// SAFETY: delegates to linked_list_allocator's heap over an area it owns.
unsafe impl<const N: usize> GlobalAlloc for Heap<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { self.heap().alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` on this heap with `layout`.
        unsafe { self.heap().dealloc(ptr, layout) }
    }
}

/// Gives the app a heap of `$bytes`: `septa_runtime::heap!(64 * 1024);`.
#[macro_export]
macro_rules! heap {
    ($bytes:expr) => {
        #[global_allocator]
        static SEPTA_HEAP: $crate::heap::Heap<{ $bytes }> = $crate::heap::Heap::new();
    };
}
