#!/usr/bin/env python3
"""tests/gen_dump.py N [SEED] -- print a synthetic memalloc heap dump.

A brk region of N blocks and an mmap region of N/10 (at least 3): used, free
and zone blocks (with class, block size and occupancy), each starting where
the previous ends; five large blocks; `zones` lines; a tlsf line whose free
count and bytes match the free blocks; two fl lines. Used by
tests/scripts_test.sh to exercise scripts/heapmap on every line of the
format, at any size, whatever the library's own dump holds."""
import random
import sys

OBJ = [16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384]


def main():
    n = int(sys.argv[1])
    rnd = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    out = ["memalloc heap dump"]
    zones = {}
    free = [0, 0]

    def region(start, kind, count):
        lines, a = [], start + 16
        for _ in range(count):
            r = rnd.random()
            if r < 0.15:
                size = 65536
                cls = rnd.randrange(len(OBJ))
                obj = OBJ[cls]
                cap = (65536 - 128) // obj
                used = rnd.randrange(cap + 1)
                z = zones.setdefault((cls, obj), [0, 0, 0])
                z[0] += 1
                z[1] += used
                z[2] += cap
                lines.append("  block 0x%x size %d zone class %d block %d used %d/%d"
                             % (a, size, cls, obj, used, cap))
            elif r < 0.45:
                size = rnd.choice([32, 48, 4112, 8192, 20000, 200000]) // 16 * 16
                free[0] += 1
                free[1] += size
                lines.append("  block 0x%x size %d free" % (a, size))
            else:
                size = rnd.choice([32, 64, 4112, 8208, 16400, 33008, 70000]) // 16 * 16
                lines.append("  block 0x%x size %d used" % (a, size))
            a += size
        end = (a + 16 + 4095) // 4096 * 4096
        out.append("region 0x%x-0x%x %s %d bytes" % (start, end, kind, end - start))
        out.extend(lines)

    region(0x55d0c0000000, "brk", n)
    region(0x7f0000000000, "mmap", max(3, n // 10))
    for i in range(5):
        out.append("large block 0x%x size %d used (mapping %d bytes)"
                   % (0x7f1200000040 + i * 0x1000000, 1048528 + i * 300000, 1052672 + i * 300000))
    for (cls, obj), (nz, used, cap) in sorted(zones.items()):
        out.append("zones class %d block %d: %d zones, %d/%d blocks used" % (cls, obj, nz, used, cap))
    out.append("tlsf free blocks %d free bytes %d fl_bitmap 0b%s" % (free[0], free[1], "0" * 54 + "1000001001"))
    out.append("  fl  3 sl_bitmap 0b%s" % ("0" * 28 + "1001"))
    out.append("  fl  9 sl_bitmap 0b11110000000000000000000000000001")
    print("\n".join(out))


if __name__ == "__main__":
    main()
