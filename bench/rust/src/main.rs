//! Real Rust workloads, one global allocator per binary (chosen by cargo
//! feature; none: `std::alloc::System`, glibc's malloc). `bench/rust/run.sh`
//! builds one binary per allocator and runs them alternating.
//!
//! Usage: `memalloc-rust-bench WORKLOAD [SCALE]`; prints the workload's
//! wall time in seconds, a checksum (so that the optimiser keeps the work
//! and the runner can compare allocators' results) and the peak RSS in KiB.
//!
//! - `hashmap`: a `HashMap<String, Vec<u8>>` of 1M entries built, read and
//!   dropped;
//! - `btree`: a `BTreeMap<u64, String>` of 200k live entries churned by 1M
//!   inserts and removes at random keys;
//! - `pipeline`: three threads passing `Box`ed messages with a payload over
//!   channels: a producer, a transformer that replaces each box by a new
//!   one, a consumer that drops them (every free is cross-thread);
//! - `json`: JSON-like trees (objects of strings, numbers, arrays) built,
//!   serialised into a `String` and dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

#[cfg(feature = "memalloc")]
#[global_allocator]
static GLOBAL: memalloc::MemAlloc = memalloc::MemAlloc;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "snmalloc")]
#[global_allocator]
static GLOBAL: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

/// xorshift64*: deterministic keys, no allocation.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn hashmap(scale: f64) -> u64 {
    let n = (1_000_000.0 * scale) as usize;
    let mut m: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..n {
        m.insert(format!("key-{i:08}"), vec![(i % 251) as u8; 8 + i % 120]);
    }
    let mut sum = 0u64;
    for i in (0..n).step_by(7) {
        sum += m[&format!("key-{i:08}")].len() as u64;
    }
    drop(m);
    sum
}

fn btree(scale: f64) -> u64 {
    let live = (200_000.0 * scale) as u64;
    let ops = (1_000_000.0 * scale) as usize;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut t: BTreeMap<u64, String> = BTreeMap::new();
    for _ in 0..live {
        let k = rng.next() % (live * 4);
        t.insert(k, format!("value {k}"));
    }
    let mut sum = 0u64;
    for _ in 0..ops {
        let k = rng.next() % (live * 4);
        if let Some(v) = t.remove(&k) {
            sum += v.len() as u64;
        } else {
            t.insert(k, format!("value {k} {}", "x".repeat((k % 40) as usize)));
        }
    }
    sum + t.len() as u64
}

struct Msg {
    id: u64,
    payload: Vec<u64>,
    tag: String,
}

fn pipeline(scale: f64) -> u64 {
    let n = (1_500_000.0 * scale) as u64;
    let (tx1, rx1) = mpsc::sync_channel::<Box<Msg>>(1024);
    let (tx2, rx2) = mpsc::sync_channel::<Box<Msg>>(1024);
    let producer = thread::spawn(move || {
        for id in 0..n {
            let len = 4 + (id % 29) as usize;
            let m = Box::new(Msg {
                id,
                payload: (0..len as u64).collect(),
                tag: format!("m{id}"),
            });
            tx1.send(m).unwrap();
        }
    });
    let transformer = thread::spawn(move || {
        for m in rx1 {
            let sum: u64 = m.payload.iter().sum();
            let out = Box::new(Msg {
                id: m.id,
                payload: vec![sum; m.payload.len() / 2 + 1],
                tag: m.tag.to_uppercase(),
            });
            drop(m);
            tx2.send(out).unwrap();
        }
    });
    let mut total = 0u64;
    for m in rx2 {
        total = total.wrapping_add(m.id + m.payload[0] + m.tag.len() as u64);
    }
    producer.join().unwrap();
    transformer.join().unwrap();
    total
}

enum Value {
    Null,
    Num(f64),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

fn build(rng: &mut Rng, depth: u32) -> Value {
    let r = rng.next();
    if depth == 0 {
        return match r % 3 {
            0 => Value::Null,
            1 => Value::Num((r % 1000) as f64 / 8.0),
            _ => Value::Str(format!("s{}", r % 100_000)),
        };
    }
    if r % 2 == 0 {
        Value::Arr((0..2 + r % 5).map(|_| build(rng, depth - 1)).collect())
    } else {
        Value::Obj(
            (0..2 + r % 5)
                .map(|i| (format!("field_{i}"), build(rng, depth - 1)))
                .collect(),
        )
    }
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Num(x) => out.push_str(&x.to_string()),
        Value::Str(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Value::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        Value::Obj(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(k);
                out.push_str("\":");
                write(x, out);
            }
            out.push('}');
        }
    }
}

fn json(scale: f64) -> u64 {
    let trees = (800.0 * scale) as usize;
    let mut rng = Rng(42);
    let mut total = 0u64;
    for _ in 0..trees {
        let v = build(&mut rng, 6);
        let mut s = String::new();
        write(&v, &mut s);
        total += s.len() as u64;
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scale: f64 = args.get(2).map_or(1.0, |s| s.parse().expect("SCALE"));
    let work: fn(f64) -> u64 = match args.get(1).map(String::as_str) {
        Some("hashmap") => hashmap,
        Some("btree") => btree,
        Some("pipeline") => pipeline,
        Some("json") => json,
        _ => {
            eprintln!("usage: memalloc-rust-bench hashmap|btree|pipeline|json [SCALE]");
            std::process::exit(2);
        }
    };
    let t = Instant::now();
    let check = work(scale);
    let secs = t.elapsed().as_secs_f64();
    // Peak RSS of this process image (wait4's ru_maxrss would keep the
    // forking parent's from before exec).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!("{secs:.6} {check} {hwm_kb}");
}
