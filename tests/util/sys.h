// sys.h - temporary files, folder removal and child processes for the test
// programs (POSIX).
//
// The programs run from the project root; temporary names go under $TMPDIR
// (default /tmp).  The runners return the child's exit status, or -1 when
// it could not be started or died from a signal.
#ifndef MCLIP_TEST_SYS_H
#define MCLIP_TEST_SYS_H

#include <stddef.h>

// A fresh temporary file "$TMPDIR/mclip_<tag>_XXXXXX" in buf; the file
// exists, empty (mkstemp), and the caller removes it.  Aborts when it
// cannot be made.
void test_tmp_file(char *buf, size_t len, const char *tag);

// Remove path: a file, or a folder with everything below it.
void test_rm_rf(const char *path);

// Run the shell command cmd (popen) and keep the first cap - 1 bytes of its
// stdout in out (NUL-terminated).
int test_run_capture(const char *cmd, char *out, size_t cap);

// Run argv[0] (a path, no PATH search) with argv, stdout written to out_log
// and stderr to err_log; with err_log NULL both go to out_log.
int test_run_argv(char *const argv[], const char *out_log, const char *err_log);

#endif
