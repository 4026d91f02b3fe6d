// Our own C `main` instead of Rust's: Rust's runtime would set SIGPIPE to SIG_IGN before ferrinit
// could see (and hand the child) the disposition it was really started with.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};

#[unsafe(no_mangle)]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: argc and argv come straight from the C runtime.
    unsafe { ferrinit::main(argc, argv) }
}

/// The system allocator, except that running out of memory (a tight RLIMIT_AS) ends ferrinit
/// with one line and exit 125, like any failure of its own: Rust's default aborts with a message
/// and a backtrace, and SIGABRT (134) would look like the child's death.
struct OrExit;

// SAFETY: every call is System's own; only its failure is handled differently.
unsafe impl GlobalAlloc for OrExit {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees are System's.
        or_exit(unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        or_exit(unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        or_exit(unsafe { System.realloc(ptr, layout, new_size) })
    }
}

#[global_allocator]
static ALLOCATOR: OrExit = OrExit;

/// No formatting, no allocation, no unwinding: a fixed line, written as every log line is (never
/// waiting on a full stderr pipe), then _exit.
fn or_exit(ptr: *mut u8) -> *mut u8 {
    if ptr.is_null() {
        // Nothing is left to do if the write fails.
        ferrinit::write_without_blocking(b"ferrinit: error: out of memory\n");
        // SAFETY: _exit has no memory-safety preconditions.
        unsafe { libc::_exit(125) };
    }
    ptr
}
