// sys.c - see sys.h.
#include "sys.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../tensor/tensor.h"

void test_tmp_file(char *buf, size_t len, const char *tag) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, len, "%s/mclip_%s_XXXXXX", dir ? dir : "/tmp", tag);
    int fd = mkstemp(buf);
    MC_CHECK(fd >= 0, "mkstemp %s failed", buf);
    close(fd);
}

void test_rm_rf(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char sub[8192];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            test_rm_rf(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int test_run_capture(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int test_run_argv(char *const argv[], const char *out_log, const char *err_log) {
    pid_t pid = fork();
    if (pid == 0) {
        // In the child: redirect, then exec; 127 when exec fails.
        int fo = open(out_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = err_log ? open(err_log, O_WRONLY | O_CREAT | O_TRUNC, 0644) : fo;
        if (fo >= 0) dup2(fo, 1);
        if (fe >= 0) dup2(fe, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
