//! The heap grows into a freed large mapping that is kept for reuse, before
//! it maps fresh memory: the mapping's pages are resident, written by the
//! program, and a fresh region faults every page in again (bench/rust
//! `hashmap`: the table's old copies beside the new regions of entries).
//! One test in its own process, so that no other test's blocks move the heap.

use std::alloc::{alloc, dealloc, Layout};

#[global_allocator]
static GLOBAL: memalloc::MemAlloc = memalloc::MemAlloc;

const MIB: usize = 1 << 20;

#[test]
fn heap_grows_into_kept_mapping() {
    if cfg!(feature = "override") {
        // The heap grows on the break then, and maps regions only when the
        // break cannot grow.
        return;
    }
    // A heap of about 24 MiB of small blocks, so that its next growth step
    // (half of it) is as big as the freed block below.
    let small = Layout::from_size_align(1024, 8).unwrap();
    let mut live: Vec<*mut u8> = Vec::with_capacity(200_000);
    for _ in 0..24 * 1024 {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc(small) };
        assert!(!p.is_null());
        live.push(p);
    }
    // A 9 MiB block, mapped on its own, written whole, freed: kept.
    let big = Layout::from_size_align(9 * MIB, 16).unwrap();
    // SAFETY: the layout has a non-zero size.
    let b = unsafe { alloc(big) };
    assert!(!b.is_null());
    // SAFETY: b holds 9 MiB.
    unsafe { std::ptr::write_bytes(b, 0x5a, big.size()) };
    let range = (b as usize)..(b as usize + big.size());
    let regions = memalloc::stats().mmap_region_bytes;
    let released = memalloc::stats().released_bytes;
    // SAFETY: b came from alloc with this layout.
    unsafe { dealloc(b, big) };
    // Small blocks until one lands in the freed block's pages.
    let mut inside = 0usize;
    for _ in 0..48 * 1024 {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc(small) };
        assert!(!p.is_null());
        // SAFETY: p holds 1024 bytes.
        unsafe { std::ptr::write_bytes(p, 1, small.size()) };
        live.push(p);
        if range.contains(&(p as usize)) {
            inside += 1;
            if inside == 1024 {
                break;
            }
        }
    }
    let after = memalloc::stats();
    assert!(
        inside == 1024,
        "{inside} of the small blocks lie in the freed 9 MiB mapping; heap regions {regions} -> {} bytes",
        after.mmap_region_bytes
    );
    // The mapping became heap, not given back and mapped again.
    assert!(after.mmap_region_bytes > regions);
    assert_eq!(after.released_bytes, released);
    assert_eq!(memalloc::check(), 0);
    for p in live {
        // SAFETY: each came from alloc with `small`.
        unsafe { dealloc(p, small) };
    }
    assert_eq!(memalloc::check(), 0);
}
