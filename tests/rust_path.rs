//! The cost and the checks of `MemAlloc`'s small path: a `dealloc` of a
//! small block takes Rust's contract as a guarantee that the pointer starts
//! a block of ours (no block-start check), and keeps the double-free mark.
//!
//! - `small_pair_instructions`: under callgrind, an `alloc` + `dealloc` pair
//!   of 24 bytes through `std::alloc` costs at most `PAIR_MAX` instructions;
//! - `small_zeroed_pair_instructions`: the same for `alloc_zeroed`, at most
//!   `ZEROED_PAIR_MAX`;
//! - `small_move_instructions`: a `String` of `format!`'s first capacity
//!   (14 bytes) grown to 28 (a move from class 16 to class 32) and freed
//!   costs at most `MOVE_MAX` instructions, its bytes kept;
//! - `small_stay_instructions`: a realloc of a small block that stays in
//!   its class (2 bytes to 8) costs at most `STAY_MAX` instructions;
//! - `cross_thread_instructions`: a 56-byte block allocated by one thread
//!   and freed by another (a `Box` sent over a channel) costs at most
//!   `CROSS_MAX` instructions, its alloc included;
//! - `cross_thread_bare_instructions`: the same, at most `CROSS_BARE_MAX`,
//!   when the freeing thread has allocated nothing (its frees still go to
//!   their owners in batches);
//! - `random_drop_instructions`: 65,536 blocks of 24 bytes (about 32
//!   zones) allocated and freed in a random order, as a dropped `HashMap`
//!   frees its entries, cost at most `DROP_MAX` instructions a block, alloc
//!   and free (the bins' spills give blocks back to as many zones);
//! - `burst_drop_instructions`: the same freed in the order they were
//!   allocated, at most `BURST_MAX`;
//! - `dealloc_twice_is_reported`: a block freed twice through Rust's
//!   `dealloc` is still reported as a double free;
//! - `dealloc_twice_apart_is_reported`: also when another free comes
//!   between the two (reported one free later, or before the block could
//!   be handed out again, or when it is reallocated);
//! - `dealloc_leaves_block_unread`: `dealloc` of a small block touches
//!   nothing of it (its page is inaccessible meanwhile);
//! - `big_heap_asks_for_huge_pages`: a heap of 48 MiB of small blocks lies
//!   in regions that ask for transparent huge pages (without `override`,
//!   where the regions are the whole heap).

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::hint::black_box;
use std::process::Command;
mod common;

#[global_allocator]
static GLOBAL: memalloc::MemAlloc = memalloc::MemAlloc;

/// Instructions an alloc + dealloc pair of 24 bytes may take, the loop
/// and `std::alloc`'s wrappers included (callgrind, x86_64, release build
/// without LTO, rustc 1.95): 69.7 measured; 72.7 when `dealloc` read the
/// granule's map byte before the owner's compare (`export::dealloc_sized`,
/// rust18i); 76.2 when the double-free mark was first checked one dealloc
/// later, with the block prefetched (`cache::free_vouched_own`; 67.5
/// before); 84 with `__rust_alloc` saving five registers (the over-aligned
/// path inlined into it), 92 with that and the block-start check on every
/// dealloc (both before that change).
const PAIR_MAX: u64 = 71;

/// The same for `alloc_zeroed` + `dealloc` (the 24 bytes' clearing and the
/// test's own check and write included): 75.2 measured (78.2 with the map
/// byte read first, as for `PAIR_MAX`; 90.0 with a `memset` call for the
/// clearing); 106 through the C calloc path (its overflow test and the
/// mmap threshold's loads).
const ZEROED_PAIR_MAX: u64 = 77;

/// Instructions an alloc of 14 bytes, its realloc to 28 (a move: class 16
/// to class 32) and the dealloc may take together, the loop's writes and
/// checks included: BTreeMap churn's `format!("value {k} {}", ...)` grows
/// its 14-byte buffer so (bench/rust `btree`). 185.9 measured; 197.9 when
/// the realloc checked where the block starts and its free checked the
/// block again (`cache::block_passes`, `cache::free_passed`: rust18i);
/// 200.9 before the dealloc's owner compare came first (`PAIR_MAX`); 233.8
/// with `memcpy` called for the 14 bytes and `realloc_sized` saving six
/// registers (226.8 with the first fixed only: `export::copy_small`).
const MOVE_MAX: u64 = 189;

/// Instructions a realloc of a 2-byte block to 8 bytes (it stays: both
/// are class 16; `format!("s{}", ...)`'s strings do this) may take, its
/// block's alloc and dealloc and the loop's checks included. 120.2
/// measured; 125.2 when the realloc checked where the block starts
/// (`cache::block_passes`: rust18i); 129.2 before the dealloc's owner
/// compare came first (`PAIR_MAX`); 150.1 when `realloc_sized` saved six
/// registers on every call (its checks' reports inline:
/// `export::realloc_reported`).
const STAY_MAX: u64 = 122;

/// Instructions a 56-byte block (a `Box` of bench/rust `pipeline`'s
/// message) may take, allocated by one thread and freed by another, the
/// loop's vector push and read and the allocating thread's zone carving
/// included: 124.3 measured; 129.0 when the free read the map byte first
/// and went through `free_to_bin`'s second thread-slot load and owner test
/// and its call of `free_foreign` (`export::dealloc_sized`, rust18i).
const CROSS_MAX: u64 = 126;

/// The same when the freeing thread has allocated nothing: 124.3
/// measured; 157.6 when such a thread, having no cache, pushed each
/// block onto its zone's remote list alone (`cache::free_foreign_slow`,
/// rust18i).
const CROSS_BARE_MAX: u64 = 127;

/// Instructions a 24-byte block may take, allocated and then freed in a
/// random order among 65,536 (about 32 zones: a spill's 31 blocks lie in
/// nearly as many), the shuffle's share included: 181.9 measured; 193.1
/// when a spill's give-back loaded the list key once a run rather than once
/// a spill, looked a block's zone up with the checks of a pointer that may
/// not be ours, and asked again for the zones of the blocks the spill
/// before had asked for (`cache::give_back`'s `give_back_runs` and
/// `spill_bin`, rust18j).
const DROP_MAX: u64 = 185;

/// The same when the blocks are freed in the order they were allocated
/// (a burst: each spill's blocks lie in one zone): 110.0 measured; 113.2
/// when a spill tested each block's zone as it linked it (rust18j:
/// `cache::give_back`'s `give_back_runs`).
const BURST_MAX: u64 = 111;

/// The count a child test is run with (`var`, set by its parent), or
/// `None` when the test runs on its own (`cargo test`): then it does
/// nothing.
fn child_count(var: &str) -> Option<usize> {
    Some(std::env::var_os(var)?.to_str()?.parse().unwrap())
}

/// The child of `small_stay_instructions`: `MEMALLOC_TEST_STAYS` blocks of 2
/// bytes reallocated to 8 (in place) and freed.
#[test]
fn small_stays_child() {
    let Some(n) = child_count("MEMALLOC_TEST_STAYS") else {
        return;
    };
    let (l2, l8) = (
        Layout::from_size_align(2, 1).unwrap(),
        Layout::from_size_align(8, 1).unwrap(),
    );
    for i in 0..n {
        // SAFETY: as in `small_moves_child`.
        unsafe {
            let p = black_box(alloc(l2));
            assert!(!p.is_null());
            p.write(i as u8);
            let q = black_box(realloc(p, l2, 8));
            assert!(!q.is_null() && *q == i as u8);
            dealloc(q, l8);
        }
    }
}

/// The child of `small_pair_instructions`: `MEMALLOC_TEST_PAIRS` pairs.
#[test]
fn small_pairs_child() {
    let Some(n) = child_count("MEMALLOC_TEST_PAIRS") else {
        return;
    };
    let l = Layout::from_size_align(24, 8).unwrap();
    for _ in 0..n {
        // SAFETY: a layout of non-zero size; the block is freed once, with
        // its layout.
        unsafe {
            let p = black_box(alloc(l));
            assert!(!p.is_null());
            dealloc(p, l);
        }
    }
}

/// The child of `small_zeroed_pair_instructions`: `MEMALLOC_TEST_ZEROED_PAIRS`
/// `alloc_zeroed` + `dealloc` pairs of 24 bytes.
#[test]
fn small_zeroed_pairs_child() {
    let Some(n) = child_count("MEMALLOC_TEST_ZEROED_PAIRS") else {
        return;
    };
    let l = Layout::from_size_align(24, 8).unwrap();
    for _ in 0..n {
        // SAFETY: as in `small_pairs_child`.
        unsafe {
            let p = black_box(alloc_zeroed(l));
            assert!(!p.is_null() && *p.add(23) == 0);
            *p.add(23) = 1; // (the next pair gets this block back: zeroed again)
            dealloc(p, l);
        }
    }
}

/// The child of `small_move_instructions`: `MEMALLOC_TEST_MOVES` blocks of
/// 14 bytes written, moved to 28 bytes by `realloc`, checked and freed.
#[test]
fn small_moves_child() {
    let Some(n) = child_count("MEMALLOC_TEST_MOVES") else {
        return;
    };
    let (l14, l28) = (
        Layout::from_size_align(14, 1).unwrap(),
        Layout::from_size_align(28, 1).unwrap(),
    );
    // The harness's thread starts sparse (its small requests take 256-byte
    // blocks, in which 28 bytes fit: no move) until it holds 32 of them at a refill,
    // and a class's first blocks come from the heap (`COLD_ALLOCS`): the
    // first 100 rounds need not move (the difference of two runs cancels
    // them out).
    let keep: Vec<Box<[u8; 200]>> = (0..100).map(|_| Box::new([0; 200])).collect();
    for i in 0..n + 100 {
        // SAFETY: layouts of non-zero size; p is reallocated with its
        // layout, q freed once with its own.
        unsafe {
            let p = black_box(alloc(l14));
            assert!(!p.is_null());
            p.write(i as u8);
            p.add(13).write(i as u8 ^ 0x5a);
            let q = black_box(realloc(p, l14, 28));
            assert!(!q.is_null() && *q == i as u8 && *q.add(13) == i as u8 ^ 0x5a);
            assert!(i < 100 || p != q, "the block did not move");
            dealloc(q, l28);
        }
    }
    drop(keep);
}

/// The child of `random_drop_instructions` (`MEMALLOC_TEST_DROPS` rounds of
/// `drop_rounds`, shuffled) and of `burst_drop_instructions`
/// (`MEMALLOC_TEST_BURSTS` rounds, freed in the order they were allocated).
#[test]
fn drop_child() {
    if let Some(n) = child_count("MEMALLOC_TEST_DROPS") {
        drop_rounds(n, true);
    }
    if let Some(n) = child_count("MEMALLOC_TEST_BURSTS") {
        drop_rounds(n, false);
    }
}

/// `n` rounds (and one more first, so that the zones exist and the thread
/// is no longer sparse) of `DROP_BLOCKS` blocks of 24 bytes allocated,
/// shuffled if `shuffle`, and freed.
fn drop_rounds(n: usize, shuffle: bool) {
    let l = Layout::from_size_align(24, 8).unwrap();
    let mut blocks = vec![0usize; DROP_BLOCKS];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..n + 1 {
        for b in blocks.iter_mut() {
            // SAFETY: a layout of non-zero size.
            let p = unsafe { black_box(alloc(l)) };
            assert!(!p.is_null());
            *b = p as usize;
        }
        // Fisher-Yates with xorshift64.
        for i in (1..DROP_BLOCKS).rev().filter(|_| shuffle) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            blocks.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for &p in &blocks {
            // SAFETY: each block came from `alloc(l)` and is freed once.
            unsafe { dealloc(black_box(p as *mut u8), l) };
        }
    }
}

/// The blocks of a round of `drop_child`.
const DROP_BLOCKS: usize = 65_536;

/// Checks that a block of child `child`'s rounds (run with `var` rounds)
/// costs at most `max` instructions, as `at_most_per_round`; `how` says
/// in which order the blocks are freed.
fn drop_at_most(child: &str, var: &str, max: u64, how: &str) {
    need_valgrind();
    let (a, b) = (2, 6);
    let per = (instructions_of(child, var, b) - instructions_of(child, var, a)) as f64
        / ((b - a) * DROP_BLOCKS) as f64;
    println!("{per:.1} instructions per block allocated and freed {how}");
    assert!(
        per <= max as f64,
        "{per:.1} instructions per block allocated and freed {how}, more than {max}"
    );
}

#[test]
fn random_drop_instructions() {
    drop_at_most("drop_child", "MEMALLOC_TEST_DROPS", DROP_MAX, "at random");
}

#[test]
fn burst_drop_instructions() {
    drop_at_most("drop_child", "MEMALLOC_TEST_BURSTS", BURST_MAX, "in order");
}

/// The child of `cross_thread_instructions`: `MEMALLOC_TEST_CROSS` blocks
/// of 56 bytes allocated by this thread, then freed by another, which has
/// allocated a block of its own first.
#[test]
fn cross_thread_child() {
    if let Some(n) = child_count("MEMALLOC_TEST_CROSS") {
        cross_thread(n, true);
    }
}

/// The child of `cross_thread_bare_instructions`: as `cross_thread_child`,
/// but the freeing thread allocates nothing.
#[test]
fn cross_thread_bare_child() {
    if let Some(n) = child_count("MEMALLOC_TEST_CROSS_BARE") {
        cross_thread(n, false);
    }
}

/// `n` blocks of 56 bytes allocated by this thread, then freed by another
/// (which first allocates a block of its own if `warm`).
fn cross_thread(n: usize, warm: bool) {
    let l = Layout::from_size_align(56, 8).unwrap();
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: a layout of non-zero size.
        let p = unsafe { black_box(alloc(l)) };
        assert!(!p.is_null());
        blocks.push(p as usize);
    }
    std::thread::spawn(move || {
        // (A block of another class first, so that the thread has a cache
        // of its own when it frees, as a consumer that allocates has.)
        let own = warm.then(|| black_box(vec![0u8; 1000]));
        for p in blocks {
            // SAFETY: each block came from `alloc(l)` and is freed once.
            unsafe { dealloc(black_box(p as *mut u8), l) };
        }
        drop(own);
    })
    .join()
    .unwrap();
}

/// Instructions of child test `child` run with `var=n` (callgrind's total).
fn instructions_of(child: &str, var: &str, n: usize) -> u64 {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(var, n.to_string())
        .output()
        .expect("valgrind");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("Collected :"))
        .unwrap_or_else(|| panic!("no callgrind total in {err}"));
    line.rsplit(' ').next().unwrap().trim().parse().unwrap()
}

/// Instructions of the child run with `n` pairs (callgrind's total).
fn instructions(n: usize) -> u64 {
    instructions_of("small_pairs_child", "MEMALLOC_TEST_PAIRS", n)
}

/// Runs scripts/ensure_tools.sh for valgrind; fails the test without it.
fn need_valgrind() {
    let root = env!("CARGO_MANIFEST_DIR");
    let tools = Command::new("bash")
        .arg(format!("{root}/scripts/ensure_tools.sh"))
        .arg("valgrind=valgrind")
        .status()
        .unwrap();
    assert!(
        tools.success(),
        "valgrind is needed (scripts/ensure_tools.sh)"
    );
}

/// Checks that a round of child test `child` (run with `var` rounds)
/// costs at most `max` instructions: the difference of two runs under
/// callgrind, so that start-up, the harness and exit cancel out. `what`
/// names a round.
fn at_most_per_round(child: &str, var: &str, max: u64, what: &str) {
    need_valgrind();
    let (a, b) = (20_000, 60_000);
    let per =
        (instructions_of(child, var, b) - instructions_of(child, var, a)) as f64 / (b - a) as f64;
    println!("{per:.1} instructions per {what}");
    assert!(
        per <= max as f64,
        "{per:.1} instructions per {what}, more than {max}"
    );
}

#[test]
fn small_zeroed_pair_instructions() {
    at_most_per_round(
        "small_zeroed_pairs_child",
        "MEMALLOC_TEST_ZEROED_PAIRS",
        ZEROED_PAIR_MAX,
        "alloc_zeroed + dealloc pair",
    );
}

#[test]
fn small_move_instructions() {
    at_most_per_round(
        "small_moves_child",
        "MEMALLOC_TEST_MOVES",
        MOVE_MAX,
        "alloc + realloc (moving) + dealloc",
    );
}

#[test]
fn small_stay_instructions() {
    at_most_per_round(
        "small_stays_child",
        "MEMALLOC_TEST_STAYS",
        STAY_MAX,
        "alloc + realloc (staying) + dealloc",
    );
}

#[test]
fn cross_thread_instructions() {
    at_most_per_round(
        "cross_thread_child",
        "MEMALLOC_TEST_CROSS",
        CROSS_MAX,
        "alloc + dealloc by another thread",
    );
}

#[test]
fn cross_thread_bare_instructions() {
    at_most_per_round(
        "cross_thread_bare_child",
        "MEMALLOC_TEST_CROSS_BARE",
        CROSS_BARE_MAX,
        "alloc + dealloc by another thread that allocates nothing",
    );
}

#[test]
fn small_pair_instructions() {
    need_valgrind();
    // Start-up, the harness and exit cancel out in the difference.
    let (a, b) = (20_000, 60_000);
    let per_pair = (instructions(b) - instructions(a)) as f64 / (b - a) as f64;
    println!("{per_pair:.1} instructions per alloc + dealloc pair");
    assert!(
        per_pair <= PAIR_MAX as f64,
        "{per_pair:.1} instructions per pair, more than {PAIR_MAX}"
    );
}

/// The child of `dealloc_twice_is_reported`.
#[test]
fn dealloc_twice_child() {
    if std::env::var_os("MEMALLOC_TEST_DEALLOC_TWICE").is_none() {
        return;
    }
    let l = Layout::from_size_align(40, 8).unwrap();
    // SAFETY: none: the double free memalloc must report.
    unsafe {
        let p = alloc(l);
        let keep = alloc(l); // (so that p is not handed out again)
        dealloc(p, l);
        dealloc(p, l);
        println!("misuse not caught {p:p} {keep:p}");
    }
}

#[test]
fn dealloc_twice_is_reported() {
    common::expect_abort(
        "dealloc_twice_child",
        "MEMALLOC_TEST_DEALLOC_TWICE",
        "1",
        "memalloc: double free",
    );
}

/// The child of `dealloc_twice_apart_is_reported`: block `p` freed twice
/// with another free between, then (by `MEMALLOC_TEST_DEALLOC_APART`)
/// `dealloc`: one more free; `alloc`: allocations of the class until its
/// bin's halves swap; `realloc`: `p` reallocated. `realloc-freed`: `p`
/// freed once, then reallocated.
#[test]
fn dealloc_twice_apart_child() {
    let Some(mode) = std::env::var_os("MEMALLOC_TEST_DEALLOC_APART") else {
        return;
    };
    let l = Layout::from_size_align(40, 8).unwrap();
    // SAFETY: none: the double free memalloc must report.
    unsafe {
        let keep: Vec<*mut u8> = (0..64).map(|_| alloc(l)).collect();
        let (p, x, y) = (alloc(l), alloc(l), alloc(l));
        let mode = mode.to_str().unwrap();
        dealloc(p, l);
        if mode == "realloc-freed" {
            black_box(std::alloc::realloc(p, l, 48));
            println!("misuse not caught {p:p} {keep:?}");
            return;
        }
        dealloc(x, l);
        dealloc(p, l);
        match mode {
            "dealloc" => dealloc(y, l),
            "alloc" => {
                // (Every block p's bin holds, and more: one of these
                // allocations takes the free half holding p twice.)
                for _ in 0..64 {
                    black_box(alloc(l));
                }
            }
            _ => {
                black_box(std::alloc::realloc(p, l, 48));
            }
        }
        println!("misuse not caught {p:p} {keep:?}");
    }
}

/// A double free through `dealloc` whose frees do not follow each other is
/// reported at the thread's next `dealloc`, or before the block could be
/// handed out again, or when it is reallocated (the mark is checked one
/// free later: `cache::free_vouched_own`); a block just freed is still known
/// as freed to `realloc`.
#[test]
fn dealloc_twice_apart_is_reported() {
    for (mode, message) in [
        ("dealloc", "memalloc: double free"),
        ("alloc", "memalloc: double free"),
        ("realloc", "memalloc: double free"),
        ("realloc-freed", "memalloc: realloc of a freed block"),
    ] {
        common::expect_abort(
            "dealloc_twice_apart_child",
            "MEMALLOC_TEST_DEALLOC_APART",
            mode,
            message,
        );
    }
}

/// The child of `dealloc_leaves_block_unread`: frees a block whose page
/// is made inaccessible for the `dealloc`, then restored.
#[test]
fn dealloc_unread_child() {
    if std::env::var_os("MEMALLOC_TEST_DEALLOC_UNREAD").is_none() {
        return;
    }
    let l = Layout::from_size_align(1000, 8).unwrap();
    // SAFETY: the blocks are memalloc's, of this layout, freed once; the
    // page is made accessible again before anything else runs here.
    unsafe {
        let keep: Vec<*mut u8> = (0..32).map(|_| alloc(l)).collect();
        let p = alloc(l);
        let page = (p as usize & !4095) as *mut libc::c_void;
        assert_eq!(libc::mprotect(page, 4096, libc::PROT_NONE), 0);
        dealloc(p, l);
        assert_eq!(
            libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_WRITE),
            0
        );
        for q in keep {
            dealloc(q, l);
        }
        println!("dealloc left the block unread");
    }
}

/// Rust's `dealloc` of a small block of the thread's own zones reads and
/// writes nothing of the block (its double-free mark is checked at the
/// next `dealloc`, the line prefetched meanwhile: `cache::free_vouched_own`),
/// so a program freeing blocks it has not touched for long does not wait
/// for each one's cache line. Checked with the block's page inaccessible
/// during the `dealloc`.
#[test]
fn dealloc_leaves_block_unread() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dealloc_unread_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MEMALLOC_TEST_DEALLOC_UNREAD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("dealloc left the block unread"),
        "{:?}: {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `VmFlags` of the mapping holding address `a` (/proc/self/smaps).
fn vm_flags(a: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split(' ').next().unwrap_or("");
        if let Some((lo, hi)) = range.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= a && a < hi;
                continue;
            }
        }
        if inside {
            if let Some(f) = line.strip_prefix("VmFlags:") {
                return f.trim().to_string();
            }
        }
    }
    panic!("no mapping holds {a:#x}");
}

#[test]
fn big_heap_asks_for_huge_pages() {
    let blocks: Vec<Box<[u8; 256]>> = (0..196_608).map(|i| Box::new([i as u8; 256])).collect();
    let last = &*blocks[blocks.len() - 1] as *const [u8; 256] as usize;
    let flags = vm_flags(last);
    let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
    println!("VmFlags of the heap's last region: {flags}");
    let asked = flags.split_whitespace().any(|f| f == "hg");
    if cfg!(feature = "override") {
        // The heap is on the program break: no huge pages asked for.
        assert!(!asked, "{flags}");
    } else if thp {
        assert!(
            asked,
            "the heap's region does not ask for huge pages: {flags}"
        );
    }
    assert!(blocks.iter().enumerate().all(|(i, b)| b[255] == i as u8));
}
