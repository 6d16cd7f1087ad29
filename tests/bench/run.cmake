# Included from tests/bench/CMakeLists.txt: a smoke run of tests/bench/run
# (the runner behind `make bench`) against the real servers.  It asserts
# that the runner works and cleans up, never how fast anything is.
tlbd_add_shell_test(bench-run-smoke run-smoke.sh LABELS bench-smoke
                    TIMEOUT 300)

# summary.svg, drawn from a synthetic table: no servers, a few seconds.
tlbd_add_shell_test(bench-chart chart-test.sh LABELS bench-smoke TIMEOUT 120)
