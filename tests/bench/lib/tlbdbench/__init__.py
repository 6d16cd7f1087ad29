"""tlbd benchmark runner: tlbd side by side with the servers its users
would pick instead (nbdkit file, qemu-nbd, nbdfuse, qemu-storage-daemon),
on one machine, in one run, interleaved.

tests/bench/run is the entry point; main.py drives the modules here:

  cleanup.py  the undo stack and the signal handling that runs it
  context.py  the tmpfs, disk folder, images, tarball, servers, ext4 mounts
  procs.py    child processes, their CPU time and peak RSS from /proc
  servers.py  how each server (and tlbd's variants) is started, found
              ready and stopped
  rows.py     the workloads (fio jobs, nbdcopy, ext4, pool-bench,
              tlbd crashtest)
  report.py   medians, ratios, the table and the targets
  summary.py  results.json, table.txt, summary.md and summary.svg
  chart.py    summary.svg: tlbd's ratio to each peer, row by row

Everything runs on one thread; children are in their own sessions so that
Ctrl-C reaches only the runner, which then stops them in order.
"""
