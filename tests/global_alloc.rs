//! A program with `memalloc::MemAlloc` as its global allocator: collections,
//! strings, threads and channels of `Box`es; every alignment from 1 to 1 MiB
//! with zeroed and realloc'd memory checked; and which malloc the C side of
//! the process has: glibc's without the `override` feature, memalloc's with
//! it (`scripts/test.sh` runs this file both ways).

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: memalloc::MemAlloc = memalloc::MemAlloc;

/// memalloc's own ownership check: the zone map marks every granule of its
/// heap regions and mappings.
fn ours(p: *const u8) -> bool {
    memalloc::zonemap::is_ours(p)
}

#[test]
fn collections_and_strings() {
    let mut m: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..50_000u32 {
        m.insert(
            format!("key-{i}"),
            vec![(i % 251) as u8; (i % 700) as usize],
        );
    }
    for i in (0..50_000u32).step_by(3) {
        m.remove(&format!("key-{i}"));
    }
    for (k, v) in &m {
        let i: u32 = k[4..].parse().unwrap();
        assert_eq!(v.len(), (i % 700) as usize);
        assert!(v.iter().all(|&b| b == (i % 251) as u8));
    }
    let mut t = BTreeMap::new();
    for i in 0..100_000u64 {
        t.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i.to_string());
        if i % 2 == 1 {
            let k = (i - 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert_eq!(t.remove(&k), Some((i - 1).to_string()));
        }
    }
    assert_eq!(t.len(), 50_000);
    let mut s = String::new();
    for i in 0..100_000 {
        s.push_str(&i.to_string());
        s.push(' ');
    }
    assert!(ours(s.as_ptr()));
    assert_eq!(s.split(' ').filter(|w| !w.is_empty()).count(), 100_000);
    let mut q: VecDeque<Box<[u32]>> = VecDeque::new();
    for i in 0..10_000u32 {
        q.push_back(vec![i; (i % 64) as usize + 1].into_boxed_slice());
        if q.len() > 100 {
            let b = q.pop_front().unwrap();
            assert!(b.iter().all(|&x| x == b[0]));
        }
    }
    let set: HashSet<Vec<u64>> = (0..10_000u64).map(|i| vec![i; 3]).collect();
    assert!(set.contains(&vec![9_999; 3]));
    assert_eq!(memalloc::check(), 0);
}

#[test]
fn threads_and_channels_of_boxes() {
    let (tx, rx) = mpsc::channel::<Box<(u64, [u64; 32])>>();
    let (stx, srx) = mpsc::sync_channel::<Box<Vec<String>>>(16);
    let mut producers = Vec::new();
    for t in 0..4u64 {
        let tx = tx.clone();
        let stx = stx.clone();
        producers.push(thread::spawn(move || {
            for i in 0..20_000u64 {
                let v = t * 1_000_000 + i;
                tx.send(Box::new((v, [v; 32]))).unwrap();
                if i % 100 == 0 {
                    let words = (0..(i / 100) % 50)
                        .map(|j| format!("{t}-{i}-{j}"))
                        .collect();
                    stx.send(Box::new(words)).unwrap();
                }
            }
        }));
    }
    drop(tx);
    drop(stx);
    // Consumers free what the producers allocated (cross-thread frees).
    let strings = thread::spawn(move || {
        let mut n = 0;
        for b in srx {
            for w in b.iter() {
                assert_eq!(w.split('-').count(), 3);
                n += 1;
            }
        }
        n
    });
    let mut sum = 0u64;
    let mut count = 0;
    for b in rx {
        assert!(b.1.iter().all(|&x| x == b.0));
        sum = sum.wrapping_add(b.0);
        count += 1;
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(count, 80_000);
    let want: u64 = (0..4u64)
        .map(|t| (0..20_000u64).map(|i| t * 1_000_000 + i).sum::<u64>())
        .sum();
    assert_eq!(sum, want);
    // Each producer sends 200 lists of 0..49 words, each length 4 times.
    assert_eq!(strings.join().unwrap(), 4 * 4 * (0..50).sum::<usize>());
    assert_eq!(memalloc::check(), 0);
}

fn fill(p: *mut u8, n: usize, seed: usize) {
    for i in 0..n {
        // SAFETY: the caller's block holds n bytes.
        unsafe { p.add(i).write((i.wrapping_mul(31) ^ seed) as u8) };
    }
}

fn holds(p: *const u8, n: usize, seed: usize) -> bool {
    // SAFETY: the caller's block holds n initialised bytes.
    (0..n).all(|i| unsafe { p.add(i).read() } == (i.wrapping_mul(31) ^ seed) as u8)
}

#[test]
fn every_alignment_zeroed_and_realloc() {
    for shift in 0..=20 {
        let align = 1usize << shift;
        for size in [
            1,
            7,
            align / 2 + 1,
            align,
            align + 1,
            3 * align + 5,
            200_000,
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: every block is used within its layout and freed with it.
            unsafe {
                // Dirty a block of the layout, so that the zeroed one below
                // may reuse dirty memory.
                let d = alloc(l);
                assert!(!d.is_null(), "alloc {size} align {align}");
                assert_eq!(d as usize % align, 0, "alloc {size} align {align}");
                assert!(ours(d));
                d.write_bytes(0xa5, size);
                dealloc(d, l);

                let z = alloc_zeroed(l);
                assert!(!z.is_null());
                assert_eq!(z as usize % align, 0, "alloc_zeroed {size} align {align}");
                assert!(
                    std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0),
                    "alloc_zeroed {size} align {align} not zero"
                );
                fill(z, size, shift);

                let big = 3 * size + 100;
                let g = realloc(z, l, big);
                assert!(!g.is_null());
                assert_eq!(g as usize % align, 0, "realloc up {size} align {align}");
                assert!(holds(g, size, shift), "realloc up {size} align {align}");
                fill(g, big, shift + 1);

                let lg = Layout::from_size_align(big, align).unwrap();
                let small = size / 2 + 1;
                let s = realloc(g, lg, small);
                assert!(!s.is_null());
                assert_eq!(s as usize % align, 0, "realloc down {size} align {align}");
                assert!(
                    holds(s, small, shift + 1),
                    "realloc down {size} align {align}"
                );
                dealloc(s, Layout::from_size_align(small, align).unwrap());
            }
        }
    }
    assert_eq!(memalloc::check(), 0);
}

#[test]
fn c_malloc_is_glibc_unless_override() {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr fills info for an address of this process.
    let found = unsafe { libc::dladdr(libc::malloc as *const libc::c_void, &mut info) };
    assert_ne!(found, 0);
    // SAFETY: dladdr's file name is a C string that lives with the object.
    let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: plain C calls; the blocks are freed with the matching free.
    let (p, d) = unsafe {
        (
            libc::malloc(100) as *mut u8,
            libc::strdup(c"a C string".as_ptr()),
        )
    };
    let (p_ours, d_ours) = (ours(p), ours(d as *const u8));
    unsafe {
        libc::free(p as *mut libc::c_void);
        libc::free(d as *mut libc::c_void);
    }
    // Rust's own allocations are memalloc's either way.
    let b = Box::new([0u8; 64]);
    assert!(ours(b.as_ptr()));
    if cfg!(feature = "override") {
        // One allocator for everything: the program's malloc, and the one
        // libc itself calls (strdup), are memalloc's.
        assert!(!file.contains("libc.so"), "malloc resolves to {file}");
        assert!(p_ours, "malloc's block is not memalloc's");
        assert!(d_ours, "strdup's block is not memalloc's");
    } else {
        assert!(file.contains("libc.so"), "malloc resolves to {file}");
        assert!(!p_ours, "malloc's block is memalloc's");
        assert!(!d_ours, "strdup's block is memalloc's");
    }
}
