#!/usr/bin/env python3
# A small, independent reader of dm-log-writes logs, written from the
# Linux kernel's documentation of the format (device-mapper/log-writes):
#
#   sector 0: struct log_write_super { le64 magic, le64 version,
#             le64 nr_entries, le32 sectorsize }
#   then nr_entries times: one sector holding struct log_write_entry
#             { le64 sector, le64 nr_sectors, le64 flags, le64 data_len }
#             (a mark's name follows it in the same sector), then
#             nr_sectors sectors of data unless the entry is a DISCARD.
#   flags: FLUSH 1, FUA 2, DISCARD 4, MARK 8, METADATA 16.
#
# It knows nothing of tlbd: a replay writes every data sector as logged and
# zeroes the range of a DISCARD.  Pure Python 3, no dependencies.
#
#   log-writes-reader.py list LOG            INDEX FLAGS SECTOR NR [MARK]
#   log-writes-reader.py replay LOG IMAGE [N]   apply entries [0, N)
import struct
import sys

MAGIC = 0x6a736677736872
NAMES = ["FLUSH", "FUA", "DISCARD", "MARK", "METADATA"]


def entries(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, version, count, ss = struct.unpack_from("<QQQI", data, 0)
    if magic != MAGIC or version != 1:
        raise SystemExit("%s: not a version 1 dm-log-writes log" % path)
    pos = ss
    for i in range(count):
        if pos + ss > len(data):
            raise SystemExit("%s: entry %d is cut short" % (path, i))
        sector, nr, flags, dlen = struct.unpack_from("<QQQQ", data, pos)
        mark = ""
        if flags & 8:
            mark = data[pos + 32:pos + 32 + dlen].decode()
        pos += ss
        payload = b""
        if not flags & 4:
            payload = data[pos:pos + nr * ss]
            if len(payload) != nr * ss:
                raise SystemExit("%s: entry %d is cut short" % (path, i))
            pos += nr * ss
        yield i, ss, sector, nr, flags, mark, payload


def flag_str(flags):
    s = ",".join(n for b, n in enumerate(NAMES) if flags & (1 << b))
    return s or "-"


def main(argv):
    if len(argv) >= 3 and argv[1] == "list":
        for i, ss, sector, nr, flags, mark, _ in entries(argv[2]):
            print("%d %s %d %d%s" % (i, flag_str(flags), sector, nr,
                                     " " + mark if flags & 8 else ""))
        return 0
    if len(argv) in (4, 5) and argv[1] == "replay":
        limit = int(argv[4]) if len(argv) == 5 else None
        with open(argv[3], "r+b") as img:
            for i, ss, sector, nr, flags, mark, payload in entries(argv[2]):
                if limit is not None and i >= limit:
                    break
                if flags & 8 or nr == 0:
                    continue
                img.seek(sector * ss)
                img.write(b"\0" * (nr * ss) if flags & 4 else payload)
        return 0
    sys.stderr.write("usage: %s list LOG | replay LOG IMAGE [N]\n" % argv[0])
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
