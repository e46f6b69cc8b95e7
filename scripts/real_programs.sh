#!/usr/bin/env bash
# scripts/real_programs.sh — run real programs on libmemalloc and compare.
#
# Each test is a small bash snippet that runs real programs (coreutils, tar,
# git, gcc, make, python3, perl, xz, ...) on generated data. It runs twice,
# in the same directory path, with the same environment: once as is (the
# reference, on glibc's malloc) and once with the library in LD_PRELOAD
# (prepended to any existing LD_PRELOAD; every process of the snippet,
# bash included, inherits it). The two runs must agree byte for byte on
# stdout and on the exit code, and on stderr unless the test says stderr is
# not deterministic. The reference run must itself exit 0, so that a broken
# test cannot pass by failing the same way twice.
#
# Snippets run under `bash -e -o pipefail`, so a crash of any program in a
# pipeline fails the snippet; a timeout (MEMALLOC_TEST_TIMEOUT seconds per
# run, default 240) counts as a failure too.
#
# Environment:
#   MEMALLOC_LIB=/path/lib.so  library to preload (default: the release
#                              build, built via scripts/run.sh if stale)
#   MEMALLOC_TEST_QUICK=1      smaller data and churn
#   MEMALLOC_TEST_ONLY=regex   run only the tests whose name matches
#   MEMALLOC_KEEP_TMP=1        keep the temp dir (printed) for inspection
#
# Output: one line per test (ok / FAIL with exit codes and diffs), then
# `N passed, M failed` alone on a line. Exit status 1 if any test failed.
set -uo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPTS/.." && pwd -P)"
QUICK="${MEMALLOC_TEST_QUICK:-0}"
TMO="${MEMALLOC_TEST_TIMEOUT:-240}"
ONLY="${MEMALLOC_TEST_ONLY:-}"

# ---------------------------------------------------------------- tools ---
# Install only what is absent (command -v first).
bash "$SCRIPTS/ensure_tools.sh" \
    sort=coreutils od=coreutils factor=coreutils csplit=coreutils \
    diff=diffutils cmp=diffutils tar=tar gzip=gzip awk=mawk sed=sed grep=grep \
    find=findutils xz=xz-utils python3=python3 perl=perl git=git gcc=gcc \
    make=make timeout=coreutils ||
    echo "real_programs: warning: some tools could not be installed; their tests will fail" >&2

# -------------------------------------------------------------- library ---
if [[ -n "${MEMALLOC_LIB:-}" ]]; then
    if [[ ! -f "$MEMALLOC_LIB" ]]; then
        echo "real_programs: MEMALLOC_LIB=$MEMALLOC_LIB: no such file" >&2
        exit 1
    fi
    LIB="$(cd "$(dirname "$MEMALLOC_LIB")" && pwd -P)/$(basename "$MEMALLOC_LIB")"
else
    # run.sh builds the release library when it is missing or stale.
    if ! LIB="$("$SCRIPTS/run.sh" --build)"; then
        echo "real_programs: could not build the library" >&2
        exit 1
    fi
fi
PRELOAD="$LIB${LD_PRELOAD:+:$LD_PRELOAD}"
echo "real_programs: library $LIB$([[ "$QUICK" == 1 ]] && echo " (quick)")"

# ------------------------------------------------------------- temp dir ---
T="$(mktemp -d "${TMPDIR:-/tmp}/memalloc-real.XXXXXX")"
cleanup() {
    if [[ "${MEMALLOC_KEEP_TMP:-0}" == 1 ]]; then
        echo "real_programs: kept $T" >&2
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
D="$T/data"    # generated inputs, shared read-only by both runs
W="$T/w"       # the working directory of a run (same path for both runs)
R="$T/results" # captured outputs
mkdir -p "$D" "$R"
ulimit -c 0 2>/dev/null || true

# A deterministic environment for both runs.
export LC_ALL=C TZ=UTC PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 \
    PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0 GIT_CONFIG_NOSYSTEM=1 D
unset LANG LANGUAGE MAKEFLAGS MFLAGS GIT_DIR GIT_WORK_TREE 2>/dev/null || true

# The real interpreter, not a version manager's shim (which may depend on HOME).
if command -v python3 >/dev/null 2>&1; then
    PY="$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3)"
else
    PY=python3
fi
export PY

# ------------------------------------------------------------- checks ---
PASS=0
FAILN=0
FAILED=()

# 0. The library really is preloaded and interposes malloc for libc itself:
#    otherwise every comparison below would compare glibc with glibc.
preload_ok=1
bind_log="$T/bindings.txt"
LD_BIND_NOW=1 LD_DEBUG=bindings LD_PRELOAD="$PRELOAD" /bin/true 2>"$bind_log" </dev/null
bind_rc=$?
missing_binds=""
for sym in malloc free calloc realloc; do
    grep -F "libc.so.6 [0] to $LIB [0]: normal symbol \`$sym'" "$bind_log" >/dev/null ||
        missing_binds+=" $sym"
done
if [[ $bind_rc -ne 0 || -n "$missing_binds" ]]; then
    if [[ $bind_rc -ne 0 ]]; then
        echo "FAIL  preload: /bin/true with the library preloaded exited $bind_rc"
        grep -v -E '^[[:space:]]*[0-9]+:' "$bind_log" | tail -n 5 | sed 's/^/  /'
    else
        echo "FAIL  preload: libc's allocator calls are not bound to $LIB (unbound:$missing_binds)"
    fi
    { grep -m3 -F "ERROR: ld.so" "$bind_log"
      grep -m3 -F "libc.so.6 [0] to" "$bind_log" | grep -F "normal symbol \`malloc'"; } |
        sed -e 's/^[[:space:]]*[0-9]*:[[:space:]]*//' -e 's/^/  /'
    FAILN=$((FAILN + 1)); FAILED+=(preload)
    preload_ok=0
else
    echo "ok    preload          (libc's malloc/free/calloc/realloc bind to the library)"
    PASS=$((PASS + 1))
fi
if [[ $preload_ok -eq 0 ]]; then
    echo "real_programs: the library is not usable as a preload; the comparisons would be meaningless"
    echo "$PASS passed, $FAILN failed"
    exit 1
fi

# ----------------------------------------------------------------- data ---
if [[ "$QUICK" == 1 ]]; then NLINES=50000; CHURN=1; else NLINES=200000; CHURN=4; fi
export CHURN

echo "real_programs: generating data ($NLINES lines)..."
# big.txt: NLINES lines of pseudo-random numbers and words (~40 bytes/line,
# ~8 MB for the full run).
awk -v n="$NLINES" 'BEGIN {
    srand(20240601)
    nv = split("the of and to in is was for on that with as by at from it an be this which or are have one had not but what all were when we there can more if no out so said up its about into than them only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three", V, " ")
    for (i = 1; i <= n; i++) {
        r = ""; L = 5 + int(rand() * 12)
        for (j = 0; j < L; j++) r = r sprintf("%c", 97 + int(rand() * 26))
        printf "%d %s %s %s %.5f\n", int(rand() * 1000000), V[1 + int(rand() * nv)], V[1 + int(rand() * nv)], r, rand() * 1000
    }
}' >"$D/big.txt"
# bin.dat: 1 MiB of binary data (deterministic).
gzip -n -c "$D/big.txt" | head -c 1048576 >"$D/bin.dat" || true
# Sorted, keyed files for join and comm.
awk '{ printf "k%07d %s\n", NR, $4 }' "$D/big.txt" | sort >"$D/join_a.txt"
awk 'NR % 3 == 0 { printf "k%07d %s %s\n", NR, $2, $5 }' "$D/big.txt" | sort >"$D/join_b.txt"
awk 'NR % 2 == 1 { print $4 }' "$D/big.txt" | sort -u >"$D/comm_a.txt"
awk 'NR % 3 == 1 { print $4 }' "$D/big.txt" | sort -u >"$D/comm_b.txt"
head -n 20000 "$D/big.txt" | tr ' ' '\t' >"$D/tabs.txt"
# A directory tree of real files (copied once, so it is stable while the
# tests run even if packages are installed meanwhile).
mkdir -p "$D/tree"
for src in /usr/share/zoneinfo /usr/share/perl5 /usr/share/perl/*; do
    [[ -d "$src" && ! -L "$src" ]] || continue
    cp -a "$src" "$D/tree/$(echo "${src#/usr/share/}" | tr / _)" 2>/dev/null || true
    [[ "$QUICK" == 1 ]] && break
done
[[ -n "$(ls -A "$D/tree")" ]] || cp -a /etc "$D/tree/etc" 2>/dev/null || true

# ---------------------------------------------------------------- tests ---

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fs", (b - a) / 1e9 }'; }

# run_side plain|pre NAME SNIPPET — one run; sets RC and TIME.
run_side() {
    local side="$1" name="$2" snippet="$3" t0 t1
    rm -rf "$W"
    mkdir -p "$W/tmp"
    t0=$(date +%s%N)
    if [[ "$side" == pre ]]; then
        (cd "$W" && HOME="$W" TMPDIR="$W/tmp" \
            timeout -k 10 "$TMO" env LD_PRELOAD="$PRELOAD" bash -e -o pipefail -c "$snippet") \
            >"$R/$name.$side.out" 2>"$R/$name.$side.err" </dev/null
    else
        (cd "$W" && HOME="$W" TMPDIR="$W/tmp" \
            timeout -k 10 "$TMO" bash -e -o pipefail -c "$snippet") \
            >"$R/$name.$side.out" 2>"$R/$name.$side.err" </dev/null
    fi
    RC=$?
    t1=$(date +%s%N)
    TIME=$(elapsed "$t0" "$t1")
    rm -rf "$W"
}

# show_diff LABEL FILE_A FILE_B
show_diff() {
    echo "  --- $1: diff reference preload (first 40 lines) ---"
    diff -a "$2" "$3" | head -n 40 | cut -c1-240 | sed 's/^/  /'
}

# compare [--no-stderr] [--needs "CMD..."] NAME SNIPPET
compare() {
    local check_err=1 needs="" name snippet cmd missing="" rc_plain rc_pre t_plain t_pre why=()
    while [[ $# -gt 2 ]]; do
        case "$1" in
            --no-stderr) check_err=0; shift ;;
            --needs) needs="$2"; shift 2 ;;
            *) break ;;
        esac
    done
    name="$1"
    snippet="$2"
    if [[ -n "$ONLY" ]] && ! [[ "$name" =~ $ONLY ]]; then return 0; fi
    for cmd in $needs; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=" $cmd"
    done
    if [[ -n "$missing" ]]; then
        echo "FAIL  $name: command not available:$missing"
        FAILN=$((FAILN + 1)); FAILED+=("$name")
        return 0
    fi
    run_side plain "$name" "$snippet"; rc_plain=$RC; t_plain=$TIME
    run_side pre "$name" "$snippet"; rc_pre=$RC; t_pre=$TIME

    [[ $rc_plain -ne 0 ]] && why+=("reference run failed")
    [[ $rc_plain -ne $rc_pre ]] && why+=("exit codes differ")
    [[ $rc_pre -eq 124 || $rc_pre -eq 137 ]] && why+=("preload run timed out after ${TMO}s")
    cmp -s "$R/$name.plain.out" "$R/$name.pre.out" || why+=("stdout differs")
    if [[ $check_err -eq 1 ]] && ! cmp -s "$R/$name.plain.err" "$R/$name.pre.err"; then
        why+=("stderr differs")
    fi
    if [[ ${#why[@]} -eq 0 ]]; then
        printf 'ok    %-16s (reference %s, preload %s)\n' "$name" "$t_plain" "$t_pre"
        PASS=$((PASS + 1))
        [[ "${MEMALLOC_KEEP_TMP:-0}" == 1 ]] || rm -f "$R/$name".*
    else
        local msg
        msg="$(printf '%s; ' "${why[@]}")"
        echo "FAIL  $name: ${msg%; }"
        echo "  exit codes: reference=$rc_plain preload=$rc_pre (times: $t_plain / $t_pre)"
        show_diff stdout "$R/$name.plain.out" "$R/$name.pre.out"
        if [[ $check_err -eq 1 ]] || [[ $rc_plain -ne $rc_pre ]] || [[ $rc_plain -ne 0 ]]; then
            show_diff stderr "$R/$name.plain.err" "$R/$name.pre.err"
        fi
        if [[ $rc_plain -ne 0 ]]; then
            echo "  --- stderr of the reference run (last 20 lines) ---"
            tail -n 20 "$R/$name.plain.err" | cut -c1-240 | sed 's/^/  /'
        fi
        FAILN=$((FAILN + 1)); FAILED+=("$name")
    fi
}

# 1. coreutils and friends -------------------------------------------------
compare sort          'sort "$D/big.txt"'
compare sort-n        'sort -n "$D/big.txt"'
compare sort-u        'sort -u -k2,3 "$D/big.txt"; sort -t" " -k5,5g -k1,1nr "$D/big.txt" | sha256sum'
compare sort-parallel 'sort --parallel=4 -S 2M -T "$TMPDIR" -k4,4 -k1,1n "$D/big.txt" | sha256sum
                       sort --parallel=2 -S 1M -T "$TMPDIR" -n "$D/big.txt" | md5sum'
compare ls            'ls -lR --time-style=+%Y-%m-%dT%H:%M:%S "$D/tree"
                       ls -lR --time-style=+%s /usr/share/zoneinfo | sha256sum'
compare du            'du -s "$D/tree"; du -s --apparent-size "$D/tree"; du -a "$D/tree" | sort -k2 | sha256sum'
compare cp            'cp -r "$D/tree" copy
                       diff -r --no-dereference "$D/tree" copy && echo identical
                       find copy | sort | sha256sum
                       find copy -type f -print0 | sort -z | xargs -0 cat | sha256sum'
compare tar           'tar --sort=name -cf t.tar -C "$D" tree; sha256sum t.tar
                       tar -tvf t.tar
                       mkdir x; tar -xf t.tar -C x
                       diff -r --no-dereference "$D/tree" x/tree && echo identical
                       tar --sort=name -czf t.tgz -C "$D" tree; sha256sum t.tgz; tar -tzf t.tgz | wc -l'
compare sha256sum     'sha256sum "$D/big.txt" "$D/bin.dat"; find "$D/tree" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum'
compare md5sum        'md5sum "$D/big.txt" "$D/bin.dat" "$D/join_a.txt"; md5sum -b - <"$D/bin.dat"'
compare split-cat     'split -l 7919 -a 3 -d "$D/big.txt" part.
                       ls part.* | wc -l; md5sum part.000 part.003
                       cat part.* >joined; cmp joined "$D/big.txt" && echo reassembled
                       split -b 100k "$D/bin.dat" bpart; cat bpart* | cmp - "$D/bin.dat" && echo binary-reassembled'
compare join          'join "$D/join_a.txt" "$D/join_b.txt"; join -v1 "$D/join_a.txt" "$D/join_b.txt" | wc -l'
compare uniq          'cut -d" " -f2 "$D/big.txt" | sort | uniq -c | sort -k1,1nr -k2
                       cut -d" " -f2,3 "$D/big.txt" | sort | uniq -d | wc -l'
compare od            'head -c 262144 "$D/bin.dat" | od -A x -t x1z; od -A d -t u4 -N 4096 "$D/bin.dat"'
compare wc            'wc "$D/big.txt" "$D/bin.dat" "$D/join_a.txt"; wc -L "$D/big.txt"'
compare tr            'tr a-z A-Z <"$D/big.txt" | sha256sum; tr -s " 0-9" <"$D/big.txt" | tr -d e | md5sum
                       tr -c "a-z\n" "_" <"$D/big.txt" | tail -n 3'
compare cut           'cut -d" " -f2,4 "$D/big.txt" | sha256sum; cut -c3-9 "$D/big.txt" | tail -n 5
                       head -n 5 "$D/tabs.txt" | cut -f1,3'
compare comm          'comm "$D/comm_a.txt" "$D/comm_b.txt" | sha256sum; comm -12 "$D/comm_a.txt" "$D/comm_b.txt" | wc -l
                       comm -3 "$D/comm_a.txt" "$D/comm_b.txt" >c3; head -n 20 c3'
compare head-tail     'head -n 1000 "$D/big.txt" | tail -n 3; tail -n 150000 "$D/big.txt" >t; head -c 200 t
                       echo; tail -c 5000 "$D/big.txt" | md5sum; head -c -100 "$D/bin.dat" | md5sum'
compare base64        'base64 "$D/bin.dat" >b64; sha256sum b64; base64 -d b64 | cmp - "$D/bin.dat" && echo roundtrip
                       base64 -w 0 "$D/join_b.txt" | md5sum'
compare expand        'expand -t 4 "$D/tabs.txt" | sha256sum; expand -t 3,9,17 "$D/tabs.txt" | tail -n 3
                       expand "$D/tabs.txt" | unexpand -a | cmp - "$D/tabs.txt" || echo unexpand-differs'
compare fold          'fold -w 17 "$D/big.txt" | sha256sum; fold -s -w 23 "$D/big.txt" | tail -n 4'
compare nl            'nl -ba -w8 "$D/big.txt" | sha256sum; nl -v 100 -i 7 "$D/tabs.txt" | tail -n 3'
compare paste         'paste "$D/join_a.txt" "$D/comm_a.txt" | sha256sum; paste -s -d, "$D/comm_b.txt" | md5sum
                       paste -d"|" - - - <"$D/tabs.txt" >p3; head -n 3 p3'
compare shuf          'shuf --random-source="$D/bin.dat" "$D/big.txt" | sha256sum
                       shuf --random-source="$D/bin.dat" -i 1-100000 -n 20'
compare seq           'seq 1 3 2000000 | sha256sum; seq -w 0.5 0.25 1000 | tail -n 3; seq -f "%.3e" 1 7 10000 | md5sum
                       seq -s, 1 100000 | md5sum'
compare factor        'seq 2 60000 | factor | sha256sum
                       factor 18446744073709551557 18446744073709551615 9223372036854775783 600851475143 4294967291'
compare csplit        'csplit -s -z -f part -n 4 "$D/big.txt" "/^99/" "{*}"
                       ls part* | wc -l; cat part* | cmp - "$D/big.txt" && echo reassembled; md5sum part0001
                       csplit -k -f ln "$D/tabs.txt" 5000 10000 15000; ls ln*'
compare sed-grep-awk  'sed -E "s/([a-z]+) ([a-z]+)/\2 \1/; s/[0-9]+/<&>/g" "$D/big.txt" | sha256sum
                       grep -E "^(1|2)[0-9]* (the|of|and) " "$D/big.txt" | md5sum; grep -c -F "people" "$D/big.txt"
                       awk "{ c[\$2]++; s[\$3] += \$5 } END { for (k in c) print k, c[k], s[k] }" "$D/big.txt" | sort'
compare gzip          'gzip -n -6 -c "$D/big.txt" | sha256sum; gzip -n -9 -c "$D/big.txt" | gzip -d | cmp - "$D/big.txt" && echo roundtrip'

# 2. multi-threaded programs -----------------------------------------------
compare --needs xz xz-threads \
    'xz -T4 --block-size=1MiB -6 -c "$D/big.txt" >big.xz; sha256sum big.xz
     xz -T4 -d -c big.xz | cmp - "$D/big.txt" && echo roundtrip
     xz -T2 --block-size=300KiB -3e -c "$D/bin.dat" | sha256sum; xz -l big.xz | tail -n 1'

# 3. python3 ---------------------------------------------------------------
cat >"$D/churn.py" <<'PYEOF'
# Allocation churn: strings, lists, dicts, JSON round trip, sorting, bytes
# growth and cross-thread frees; prints a digest of everything it computed.
import hashlib, json, os, random, sys, threading, collections

scale = int(os.environ.get("CHURN", "4"))
rng = random.Random(12345)
h = hashlib.sha256()
letters = "abcdefghijklmnopqrstuvwxyz"

def word(n):
    return "".join(rng.choice(letters) for _ in range(n))

# 1. many short-lived strings of many sizes (~scale * 60 MB churned)
total = 0
for rnd in range(scale * 4):
    strs = [word(rng.randint(1, 12)) * rng.randint(1, 40) for _ in range(40000)]
    strs.sort()
    total += sum(len(s) for s in strs)
    h.update(strs[0].encode()); h.update(strs[-1].encode())
    del strs
print("strings", total)

# 2. a big dict -> JSON -> back
d = {}
for i in range(60000 * scale):
    k = "%s-%d" % (word(6), i)
    d[k] = {"i": i, "w": [word(3) for _ in range(i % 5)], "f": i / 7.0}
s = json.dumps(d, sort_keys=True)
h.update(hashlib.sha256(s.encode()).digest())
back = json.loads(s)
assert back == d
print("json", len(s), len(back))
del d, back, s

# 3. sorting numbers and tuples
nums = [rng.random() for _ in range(300000 * scale)]
nums.sort()
h.update(repr(nums[:: 1000]).encode())
tup = sorted((rng.randint(0, 1000), word(4)) for _ in range(100000 * scale))
h.update(repr(tup[:: 997]).encode())
print("sorted", len(nums), len(tup))
del nums, tup

# 4. growing bytes / bytearray / list (realloc patterns)
ba = bytearray()
parts = []
for i in range(200000 * scale):
    piece = str(i).encode() * (1 + i % 7)
    ba += piece
    if i % 3 == 0:
        parts.append(piece)
h.update(hashlib.sha256(ba).digest())
joined = b"".join(parts)
h.update(hashlib.sha256(joined).digest())
print("bytes", len(ba), len(joined))
del ba, parts, joined

# 5. the big text file: word counts
with open(os.path.join(os.environ["D"], "big.txt")) as f:
    lines = f.read().splitlines()
cnt = collections.Counter(w for ln in lines for w in ln.split()[1:3])
top = sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
h.update(repr(top).encode())
print("words", len(lines), top[:3])
del lines, cnt

# 6. threads: objects built in one thread and freed in another
results = [None] * 4
handoff = [[] for _ in range(4)]
def producer(t):
    r = random.Random(t)
    handoff[t] = [{"k": "x" * r.randint(1, 300), "v": list(range(r.randint(0, 30)))}
                  for _ in range(30000 * scale)]
def consumer(t):
    objs = handoff[(t + 1) % 4]
    results[t] = sum(len(o["k"]) + sum(o["v"]) for o in objs)
    handoff[(t + 1) % 4] = None
ths = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
for t in ths: t.start()
for t in ths: t.join()
ths = [threading.Thread(target=consumer, args=(t,)) for t in range(4)]
for t in ths: t.start()
for t in ths: t.join()
h.update(repr(results).encode())
print("threads", results)

print("digest", h.hexdigest())
PYEOF
compare --needs python3 python3 '"$PY" "$D/churn.py"'

# 4. perl ------------------------------------------------------------------
cat >"$D/churn.pl" <<'PLEOF'
# Hash and string churn, regexes, sort; prints a digest.
use strict; use warnings; use Digest::MD5 qw(md5_hex);
my $scale = $ENV{CHURN} || 4;
my $ctx = Digest::MD5->new;
srand(4242);
my @l = ('a' .. 'z');
sub word { my $n = shift; join '', map { $l[int rand 26] } 1 .. $n }

my %h;
for my $i (1 .. 60000 * $scale) {
    my $k = word(3 + $i % 9) . $i;
    $h{$k} = [ $i, word($i % 13), { n => $i * 3 } ];
}
for my $k (sort keys %h) { $ctx->add($k, $h{$k}[1]) if $h{$k}[0] % 17 == 0 }
delete $h{$_} for grep { $h{$_}[0] % 2 } keys %h;
print "hash ", scalar(keys %h), "\n";

my $s = '';
for my $i (1 .. 100000 * $scale) { $s .= word(1 + $i % 11) . ' ' }
(my $t = $s) =~ s/([aeiou])([a-z])/$2$1/g;
my @w = split ' ', $t;
my %c; $c{length $_}++ for @w;
$ctx->add(join ',', map { "$_=$c{$_}" } sort { $a <=> $b } keys %c);
print "words ", scalar(@w), " len ", length($t), "\n";
undef $s; undef $t; undef @w;

open my $fh, '<', "$ENV{D}/big.txt" or die "big.txt: $!";
my (%cnt, $sum);
while (my $line = <$fh>) {
    if ($line =~ /^(\d+) (\w+) (\w+) (\w+) ([\d.]+)$/) {
        $cnt{$2}++; $sum += $1;
        $ctx->add(uc $4) if $1 % 1000 == 7;
    }
}
close $fh;
my @top = (sort { $cnt{$b} <=> $cnt{$a} || $a cmp $b } keys %cnt)[0 .. 9];
print "top @top[0..2] sum $sum\n";
$ctx->add("@top");

my @recs = map { sprintf "%08d:%s", int(rand 1e8), word(5) } 1 .. 50000 * $scale;
my @sorted = sort { substr($a, 9) cmp substr($b, 9) || $a cmp $b } @recs;
$ctx->add(@sorted[0 .. 99]);
print "sorted ", scalar(@sorted), "\n";
print "digest ", $ctx->hexdigest, "\n";
PLEOF
compare --needs perl perl 'perl "$D/churn.pl"'

# 5. git -------------------------------------------------------------------
compare --needs git git '
g() { git -c user.name=t -c user.email=t@t -c init.defaultBranch=main \
          -c gc.autoDetach=false -c core.autocrlf=false -c advice.detachedHead=false "$@"; }
export GIT_AUTHOR_DATE="2020-01-01T00:00:00Z" GIT_COMMITTER_DATE="2020-01-01T00:00:00Z"
mkdir repo; cd repo; g init -q .
head -n 60000 "$D/big.txt" | split -l 200 -a 3 - f.
i=0; for f in f.*; do d=dir$((i % 3))/${f:2:1}; mkdir -p "$d"; mv "$f" "$d/$f.txt"; i=$((i + 1)); done
g add -A; g commit -q -m "initial import"
for i in 1 2 3 4 5; do
    export GIT_AUTHOR_DATE="2020-01-0$((i + 1))T12:00:00Z" GIT_COMMITTER_DATE="2020-01-0$((i + 1))T12:00:00Z"
    n=0
    for f in $(g ls-files | awk "NR % (5 + $i) == 0"); do
        sed -i "s/ the / THE$i /; ${i}0d" "$f"; n=$((n + 1))
    done
    head -n $((i * 300)) "$D/big.txt" | tail -n 250 >"new$i.txt"
    [[ $i -eq 3 ]] && g rm -q -r -f dir1
    g add -A; g commit -q -m "change $i: $n files"
done
g checkout -q -b side HEAD~2; echo side >side.txt; g add side.txt; g commit -q -m side
g checkout -q main; g merge -q --no-edit side
g gc -q --aggressive
g fsck --full --strict --no-progress
g count-objects -v | grep -E "^(count|in-pack|packs):"
g log --stat --format="%H %an %ad %s"
g rev-parse HEAD HEAD^{tree}
g ls-tree -r HEAD | sha256sum
g archive --format=tar HEAD | sha256sum
g diff --stat HEAD~4 HEAD | tail -n 3
g blame -s dir0/a/f.aaa.txt | md5sum
g grep -c people HEAD -- dir2 | sort >grep.txt; head -n 5 grep.txt; wc -l <grep.txt
'

# 6. gcc / g++ / make --------------------------------------------------------
cat >"$D/prog.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

struct rec { uint32_t key; char *name; };

static uint32_t rng_state = 2463534242u;
static uint32_t xrand(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 17; rng_state ^= rng_state << 5;
    return rng_state;
}
static int cmp_rec(const void *a, const void *b) {
    const struct rec *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return strcmp(x->name, y->name);
}
#define F(n) static uint64_t fn##n(uint64_t x) { for (int i = 0; i < (n % 7) + 1; i++) x = x * 6364136223846793005ull + n; return x ^ (x >> 29); }
#define F10(n) F(n##0) F(n##1) F(n##2) F(n##3) F(n##4) F(n##5) F(n##6) F(n##7) F(n##8) F(n##9)
F10(1) F10(2) F10(3) F10(4) F10(5) F10(6) F10(7) F10(8) F10(9)
#define C(n) h = fn##n(h);
#define C10(n) C(n##0) C(n##1) C(n##2) C(n##3) C(n##4) C(n##5) C(n##6) C(n##7) C(n##8) C(n##9)

int main(void) {
    size_t n = 200000, cap = 16, len = 0;
    struct rec *v = malloc(cap * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        if (len == cap) { cap *= 2; v = realloc(v, cap * sizeof *v); }
        size_t l = 1 + xrand() % 40;
        v[len].key = xrand() % 50000;
        v[len].name = malloc(l + 1);
        for (size_t j = 0; j < l; j++) v[len].name[j] = 'a' + xrand() % 26;
        v[len].name[l] = 0;
        len++;
        if (xrand() % 5 == 0) { len--; free(v[len].name); }
    }
    qsort(v, len, sizeof *v, cmp_rec);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        for (char *p = v[i].name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h ^= v[i].key;
        free(v[i].name);
    }
    free(v);
    C10(1) C10(2) C10(3) C10(4) C10(5) C10(6) C10(7) C10(8) C10(9)
    char *buf = calloc(1 << 20, 1);
    snprintf(buf, 1 << 20, "%zu records, hash %016llx", len, (unsigned long long)h);
    puts(buf);
    free(buf);
    return 0;
}
CEOF
compare --needs gcc gcc '
cp "$D/prog.c" .
gcc -O2 -g -Wall -c prog.c -o prog.o; sha256sum prog.o
gcc -O2 prog.o -o prog; sha256sum prog
./prog
gcc -O2 -S -o - prog.c | sha256sum'

cat >"$D/prog.cc" <<'CXXEOF'
#include <iostream>
#include <map>
#include <string>
#include <vector>
#include <algorithm>
#include <memory>
#include <sstream>
int main() {
    std::map<std::string, std::vector<int>> m;
    unsigned s = 12345;
    for (int i = 0; i < 200000; i++) {
        s = s * 1103515245u + 12345u;
        std::string k = "key" + std::to_string(s % 20000);
        m[k].push_back(i);
    }
    std::vector<std::unique_ptr<std::string>> v;
    for (auto &kv : m) v.emplace_back(new std::string(kv.first + ":" + std::to_string(kv.second.size())));
    std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) { return *a > *b; });
    std::ostringstream os;
    for (size_t i = 0; i < v.size(); i += 1000) os << *v[i] << ' ';
    std::cout << m.size() << ' ' << os.str() << std::endl;
}
CXXEOF
if command -v g++ >/dev/null 2>&1; then
    compare --needs g++ g++ '
cp "$D/prog.cc" .
g++ -O2 -std=c++17 -c prog.cc -o prog.o; sha256sum prog.o
g++ -O2 prog.o -o prog; ./prog'
fi

compare --needs "make gcc" make '
cp "$D/prog.c" main.c
for i in 1 2 3 4; do
    printf "int part%d(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * %d; return s; }\n" $i $i >p$i.c
done
cat >sum.c <<"SUMEOF"
#include <stdio.h>
int part1(int); int part2(int); int part3(int); int part4(int);
int main(void) { printf("%d\n", part1(10) + part2(20) + part3(30) + part4(40)); return 0; }
SUMEOF
cat >Makefile <<"MKEOF"
.RECIPEPREFIX := >
CC = gcc
CFLAGS = -O2
OBJS = p1.o p2.o p3.o p4.o sum.o
all: sum main
sum: $(OBJS)
> $(CC) $(CFLAGS) -o $@ $^
main: main.o
> $(CC) $(CFLAGS) -o $@ $^
%.o: %.c
> $(CC) $(CFLAGS) -c -o $@ $<
clean:
> rm -f *.o sum main
.PHONY: all clean
MKEOF
make -s -j2 all
./sum; ./main
sha256sum $(ls *.o | sort)
make -s clean; ls'

# A multi-threaded C program: blocks are allocated in one thread and freed
# in another, through a mutex-protected queue.
cat >"$D/threads.c" <<'TEOF'
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define NT 4
#define N 200000
struct q { pthread_mutex_t m; pthread_cond_t c; void *items[1024]; int head, tail, done; };
static struct q qs[NT];
static unsigned long sums[NT];
static void *producer(void *arg) {
    long t = (long)arg; unsigned s = 777u + (unsigned)t; struct q *q = &qs[t];
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        size_t n = 1 + (s >> 8) % ((i % 100 == 0) ? 70000 : 600);
        unsigned char *p = malloc(n + sizeof(size_t));
        memcpy(p, &n, sizeof n); memset(p + sizeof n, (int)(i & 0xff), n);
        if (i % 7 == 0) { p = realloc(p, n + sizeof n + 100); }
        pthread_mutex_lock(&q->m);
        while ((q->tail + 1) % 1024 == q->head) pthread_cond_wait(&q->c, &q->m);
        q->items[q->tail] = p; q->tail = (q->tail + 1) % 1024;
        pthread_cond_broadcast(&q->c);
        pthread_mutex_unlock(&q->m);
    }
    pthread_mutex_lock(&q->m); q->done = 1; pthread_cond_broadcast(&q->c); pthread_mutex_unlock(&q->m);
    return NULL;
}
static void *consumer(void *arg) {
    long t = (long)arg; struct q *q = &qs[t]; unsigned long sum = 0;
    for (;;) {
        pthread_mutex_lock(&q->m);
        while (q->head == q->tail && !q->done) pthread_cond_wait(&q->c, &q->m);
        if (q->head == q->tail && q->done) { pthread_mutex_unlock(&q->m); break; }
        unsigned char *p = q->items[q->head]; q->head = (q->head + 1) % 1024;
        pthread_cond_broadcast(&q->c);
        pthread_mutex_unlock(&q->m);
        size_t n; memcpy(&n, p, sizeof n);
        sum = sum * 31 + n + p[sizeof n] + p[sizeof n + n - 1];
        free(p);
    }
    sums[t] = sum;
    return NULL;
}
int main(void) {
    pthread_t pr[NT], co[NT];
    for (long t = 0; t < NT; t++) {
        pthread_mutex_init(&qs[t].m, NULL); pthread_cond_init(&qs[t].c, NULL);
        pthread_create(&pr[t], NULL, producer, (void *)t);
        pthread_create(&co[t], NULL, consumer, (void *)t);
    }
    for (int t = 0; t < NT; t++) { pthread_join(pr[t], NULL); pthread_join(co[t], NULL); }
    for (int t = 0; t < NT; t++) printf("thread %d: %lu\n", t, sums[t]);
    return 0;
}
TEOF
compare --needs gcc pthreads 'gcc -O2 -pthread "$D/threads.c" -o threads; ./threads; ./threads | md5sum'

# ----------------------------------------------------------------- done ---
if [[ $FAILN -gt 0 ]]; then
    echo "failed: ${FAILED[*]}"
fi
echo "$PASS passed, $FAILN failed"
[[ $FAILN -eq 0 ]]
