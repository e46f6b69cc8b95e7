//! `memalloc::stats()` shows the program's bytes, `realloc` grows in place,
//! the dump and check see the heap, and `memalloc::Pool` serves layouts and
//! reports misuse as memalloc reports it (a child process aborts with the
//! message). The tests take turns (`SERIAL`), so that no other test's
//! allocations move the figures.

use std::alloc::{alloc, dealloc, realloc, Layout};
mod common;

#[global_allocator]
static GLOBAL: memalloc::MemAlloc = memalloc::MemAlloc;

const MIB: usize = 1 << 20;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn stats_dump_and_realloc_in_place() {
    let _turn = serial();
    let before = memalloc::stats();
    let v: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; MIB]).collect();
    let mid = memalloc::stats();
    assert!(
        mid.in_use >= before.in_use + 64 * MIB,
        "in_use {} -> {}",
        before.in_use,
        mid.in_use
    );
    assert!(mid.peak_in_use >= mid.in_use);
    assert!(mid.large_bytes >= 64 * MIB && mid.large_count >= 64);
    assert!(mid.syscalls > before.syscalls);
    drop(v);
    let after = memalloc::stats();
    assert!(
        after.in_use + 60 * MIB <= mid.in_use,
        "in_use {} after the drop",
        after.in_use
    );
    assert!(after.peak_in_use >= mid.in_use);

    // A heap block (below the 128 KiB mmap threshold) shrinks in place,
    // leaving the rest free right after it, and grows back into it: the
    // address stays, for an aligned block too.
    let mut same = 0;
    for align in [8usize, 64, 4096] {
        let l = Layout::from_size_align(60_000, align).unwrap();
        // SAFETY: blocks used within their layouts and freed with them.
        unsafe {
            let p = alloc(l);
            p.write_bytes(7, 20_000);
            let s = realloc(p, l, 20_000);
            let q = realloc(s, Layout::from_size_align(20_000, align).unwrap(), 40_000);
            assert_eq!(q as usize % align, 0);
            assert!(std::slice::from_raw_parts(q, 20_000)
                .iter()
                .all(|&b| b == 7));
            same += (s == p && q == p) as usize;
            dealloc(q, Layout::from_size_align(40_000, align).unwrap());
        }
    }
    assert_eq!(same, 3, "realloc moved a block it could grow in place");

    let mut out = Vec::new();
    memalloc::dump_to(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("memalloc heap dump"));
    assert!(text.contains("region "), "{text}");
    assert_eq!(memalloc::check(), 0);
}

#[test]
fn pool_layouts() {
    let _turn = serial();
    let pool = memalloc::Pool::new(4 * MIB).unwrap();
    let mut blocks = Vec::new();
    for shift in 0..=12 {
        let l = Layout::from_size_align(100 + shift * 37, 1 << shift).unwrap();
        let p = pool.alloc_zeroed(l).unwrap();
        assert_eq!(p.as_ptr() as usize % (1 << shift), 0);
        // The pool's blocks are not the global heap's.
        assert!(!memalloc::zonemap::is_ours(p.as_ptr()));
        // SAFETY: the block holds l.size() bytes.
        unsafe {
            assert!(std::slice::from_raw_parts(p.as_ptr(), l.size())
                .iter()
                .all(|&b| b == 0));
            p.as_ptr().write_bytes(shift as u8, l.size());
        }
        blocks.push((p, l));
    }
    assert_eq!(pool.check(), 0);
    for (p, l) in blocks {
        // SAFETY: from this pool with this layout; not used afterwards.
        unsafe {
            let q = pool.realloc(p, l, l.size() * 5).unwrap();
            assert_eq!(q.as_ptr() as usize % l.align(), 0);
            assert_eq!(q.as_ptr().add(l.size() - 1).read(), q.as_ptr().read());
            pool.dealloc(q, Layout::from_size_align(l.size() * 5, l.align()).unwrap());
        }
    }
    assert!(pool
        .alloc(Layout::from_size_align(8 * MIB, 16).unwrap())
        .is_none());
    assert_eq!(pool.check(), 0);

    let arena: &'static mut [u8] = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
    let from_static = memalloc::Pool::from_static(arena).unwrap();
    let l = Layout::new::<[u64; 8]>();
    let p = from_static.alloc(l).unwrap();
    // SAFETY: as above.
    unsafe { from_static.dealloc(p, l) };
    assert_eq!(from_static.check(), 0);
}

/// The child side of `pool_misuse_is_reported`: does the misuse named by
/// the environment (and aborts, if memalloc catches it).
#[test]
fn pool_misuse_child() {
    let Ok(what) = std::env::var("MEMALLOC_TEST_POOL_MISUSE") else {
        return;
    };
    let pool = memalloc::Pool::new(MIB).unwrap();
    let l = Layout::new::<[u8; 64]>();
    let p = pool.alloc(l).unwrap();
    // SAFETY: none: these are the misuses memalloc must report.
    unsafe {
        match what.as_str() {
            "foreign" => {
                let b = Box::into_raw(Box::new([0u8; 64])) as *mut u8;
                pool.dealloc(std::ptr::NonNull::new(b).unwrap(), l);
            }
            _ => {
                pool.dealloc(p, l);
                pool.dealloc(p, l);
            }
        }
    }
    println!("misuse not caught");
}

#[test]
fn pool_misuse_is_reported() {
    let _turn = serial();
    for (what, message) in [
        (
            "foreign",
            "memalloc: invalid pointer (not from this pool) at 0x",
        ),
        (
            "double",
            "memalloc: double free (block is already free) at 0x",
        ),
    ] {
        common::expect_abort(
            "pool_misuse_child",
            "MEMALLOC_TEST_POOL_MISUSE",
            what,
            message,
        );
    }
}

/// A small block that grows within its size class stays where it is,
/// however little was asked for at first (`format!("s{}", x)` asks for 2
/// bytes and grows to 8 at its first argument: both class 16); one that
/// outgrows its class, or shrinks to half of it or less, moves, keeping its
/// contents. (The class is the block's usable size: a young thread's
/// requests of up to 256 bytes take 256-byte blocks.)
#[test]
fn small_realloc_grows_within_its_class() {
    let _turn = serial();
    for old in [1usize, 2, 8, 16, 17, 33, 100, 300, 2100] {
        let l = Layout::from_size_align(old, 1).unwrap();
        // SAFETY: a block of ours, live.
        let have = unsafe {
            let p = alloc(l);
            assert!(memalloc::zonemap::is_zone(p));
            let have = memalloc::export::usable_size(p);
            dealloc(p, l);
            have
        };
        assert!(have >= old && have <= 4096);
        let mut cases = vec![(have, true), (have + 1, false)];
        if old < have {
            cases.push((old + 1, true));
        }
        if old > have / 2 && old > 1 {
            cases.push((old - 1, true));
        }
        if have / 2 < old {
            cases.push((have / 2, false));
        }
        for (new, stays) in cases {
            // SAFETY: blocks used within their layouts and freed with them.
            unsafe {
                let p = alloc(l);
                assert_eq!(memalloc::export::usable_size(p), have);
                for i in 0..old {
                    p.add(i).write(i as u8 ^ 0x5a);
                }
                let q = realloc(p, l, new);
                assert!(!q.is_null());
                assert_eq!(q == p, stays, "realloc {old} -> {new} ({have} usable)");
                for i in 0..old.min(new) {
                    assert_eq!(q.add(i).read(), i as u8 ^ 0x5a, "realloc {old} -> {new}");
                }
                q.add(new - 1).write(1);
                dealloc(q, Layout::from_size_align(new, 1).unwrap());
            }
        }
    }
    // A String of 2 bytes (format!'s) grown a byte at a time to its usable
    // size never moves.
    let mut v: Vec<u8> = Vec::with_capacity(2);
    // SAFETY: v's block, live.
    let have = unsafe { memalloc::export::usable_size(v.as_mut_ptr()) };
    let mut moves = 0;
    let mut at = v.as_ptr();
    for i in 0..have {
        v.push(i as u8);
        moves += (v.as_ptr() != at) as usize;
        at = v.as_ptr();
    }
    assert_eq!(moves, 0, "a Vec of 2 bytes grown to {have} moved");
    assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
}

/// The child side of `small_realloc_of_a_freed_block_is_reported`.
#[test]
fn small_realloc_misuse_child() {
    if std::env::var_os("MEMALLOC_TEST_REALLOC_FREED").is_none() {
        return;
    }
    let l = Layout::from_size_align(2, 1).unwrap();
    // SAFETY: none: the realloc of a freed block memalloc must report.
    unsafe {
        let p = alloc(l);
        let keep = alloc(l); // (so that p is not handed out again)
        dealloc(p, l);
        let q = realloc(p, l, 8);
        println!("misuse not caught {q:p} {keep:p}");
    }
}

/// The in-place path of a small realloc keeps the checks: the realloc of a
/// freed block is reported.
#[test]
fn small_realloc_of_a_freed_block_is_reported() {
    let _turn = serial();
    common::expect_abort(
        "small_realloc_misuse_child",
        "MEMALLOC_TEST_REALLOC_FREED",
        "1",
        "memalloc: realloc of a freed block",
    );
}
