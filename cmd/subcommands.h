/* tlbd: the subcommands of the tlbd program.  Each takes the arguments that
 * follow the tlbd program name (argv[0] is the subcommand's name) and
 * returns the process's exit status.
 */
#ifndef TLBD_SUBCOMMANDS_H
#define TLBD_SUBCOMMANDS_H

int tlbd_fuse_main(int argc, char **argv);      /* cmd/fuse.c */
int tlbd_nbd_main(int argc, char **argv);       /* cmd/nbd.c */
int tlbd_bench_main(int argc, char **argv);     /* cmd/bench.c */
int tlbd_info_main(int argc, char **argv);      /* cmd/info.c */
int tlbd_ctl_main(int argc, char **argv);       /* cmd/ctl.c */
int tlbd_replay_main(int argc, char **argv);    /* cmd/replay.c */
int tlbd_stat_main(int argc, char **argv);      /* cmd/stat.c */
int tlbd_crashtest_main(int argc, char **argv); /* cmd/crashtest.c */

#endif /* TLBD_SUBCOMMANDS_H */
