//! The broker binary's memory allocator: mimalloc, called directly for the alignments its blocks
//! have anyway, and its settings.
//!
//! Runs in: every thread (allocation); `settings` once at the start of `main`.
//!
//! mimalloc returns freed memory to the OS (a queue of expired or consumed messages does not keep
//! its pages), and is at least as fast as the system allocator on the message path. It is built
//! with `no_thp` (no transparent huge pages): idle RSS 5 MiB instead of 13 MiB.
//!
//! # Invariants
//! - Every pointer handed out is aligned as its `Layout` asks: `mi_malloc`'s blocks are at least
//!   [`NATURAL_ALIGN`]-aligned (every size class is a multiple of the word size and pages start
//!   aligned), so only larger alignments take mimalloc's aligned entry points.
//! - Everything is freed with `mi_free`, whichever entry point allocated it.
#![allow(unsafe_code)]
use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every mimalloc block has: a machine word. mimalloc's own `GlobalAlloc`
/// (`mimalloc::MiMalloc`) calls `mi_malloc_aligned` for every layout, and mimalloc 3's aligned
/// path does not find the size class of a size that is not a power of two (a message of 76 bytes,
/// align 8): it over-allocates by the alignment instead, into the next class. Each in-memory
/// message took a 96-byte block instead of an 80-byte one, and about 150 instructions instead
/// of about 20 (BENCHMARKS.md, "Allocator").
const NATURAL_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc, entered through `mi_malloc` for word-aligned layouts.
pub struct Allocator;

// SAFETY: every function forwards to mimalloc's allocation functions, which return null or a
// block of at least `size` bytes aligned to `NATURAL_ALIGN` (`mi_malloc`, `mi_zalloc`,
// `mi_realloc`) or to the given alignment (the `_aligned` variants); all of them may be freed with
// `mi_free`, and `mi_realloc` keeps the block's alignment of `NATURAL_ALIGN`.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= NATURAL_ALIGN {
            unsafe { mi::mi_malloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= NATURAL_ALIGN {
            unsafe { mi::mi_zalloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= NATURAL_ALIGN {
            unsafe { mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
        } else {
            unsafe { mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8 }
        }
    }
}

#[global_allocator]
static GLOBAL: Allocator = Allocator;

/// How long mimalloc keeps freed memory before it returns it to the OS, in milliseconds (its
/// default is 10). Large bodies are read into 1 MiB buffers that live until every body in them is
/// delivered; with 10 ms each new buffer landed on pages just returned, so every read faulted its
/// pages in again and cleared them (64 KiB bodies end to end: 12-14 k msgs/s and 73-83 us of broker
/// CPU per message; with 1 s: 19-23 k msgs/s and 38-46 us). Memory freed by an emptied queue is
/// still returned, one second later.
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// mimalloc's option number of `purge_delay` (`mi_option_purge_delay` in mimalloc.h, v2 and v3).
const MI_OPTION_PURGE_DELAY: mi::mi_option_t = 15;

/// Allocator options, before any thread starts. An environment variable `MIMALLOC_PURGE_DELAY`
/// given by the user wins.
pub fn settings() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called once at the start of main, before any other thread exists (the function
        // is not thread safe); the option number is mimalloc's purge delay.
        unsafe { mi::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    warren::queue::set_release_freed_memory(release_freed_memory);
}

/// Return the memory that is free now to the OS, without waiting for the purge delay: called by
/// the dropper thread after it freed a purged or deleted queue, so that work is done there.
fn release_freed_memory() {
    // SAFETY: `mi_collect` may be called from any thread at any time.
    unsafe { mi::mi_collect(true) };
}
