/* bench/runner.c — run one command and measure it: wall time and peak RSS.
 *
 * usage: runner RESULT_FILE TIMEOUT_S PRELOAD -- COMMAND [ARGS...]
 *
 * Forks; the child puts itself in its own process group, sets LD_PRELOAD to
 * PRELOAD (or removes it when PRELOAD is empty) and execs COMMAND. The parent
 * waits with wait4 and writes one line to RESULT_FILE:
 *
 *     exit=<code> signal=<n> timeout=<0|1> time=<seconds> cpu=<seconds> maxrss=<KiB>
 *     nivcsw=<involuntary context switches> majflt=<major page faults>
 *
 * (on one line; time: wall clock from fork to reaping; cpu: user + system
 * time of the child and the threads and processes it waited for.)
 *
 * Why a C program and not the harness itself: ru_maxrss survives execve, so
 * a child forked from the Python harness (or vfork'ed, sharing its memory)
 * starts with the harness's ~25 MB as its peak. Forked from this small
 * program, the floor is this program's ~1 MB. The runner is never preloaded:
 * the allocator under test is set only in the child.
 * After TIMEOUT_S seconds the child's process group gets SIGKILL.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_timed_out;
static pid_t g_child;

static void on_alarm(int sig)
{
    (void)sig;
    g_timed_out = 1;
    kill(-g_child, SIGKILL);
    kill(g_child, SIGKILL);
}

int main(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[4], "--") != 0) {
        fprintf(stderr, "usage: runner RESULT_FILE TIMEOUT_S PRELOAD -- COMMAND [ARGS...]\n");
        return 64;
    }
    const char *result = argv[1];
    double timeout = strtod(argv[2], NULL);
    const char *preload = argv[3];

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g_child = fork();
    if (g_child < 0) {
        perror("runner: fork");
        return 70;
    }
    if (g_child == 0) {
        setpgid(0, 0);
        if (preload[0])
            setenv("LD_PRELOAD", preload, 1);
        else
            unsetenv("LD_PRELOAD");
        execvp(argv[5], argv + 5);
        fprintf(stderr, "runner: exec %s: %s\n", argv[5], strerror(errno));
        _exit(127);
    }
    setpgid(g_child, g_child); /* also from here, so the group exists before any kill */
    if (timeout > 0) {
        struct itimerval it;
        memset(&it, 0, sizeof it);
        it.it_value.tv_sec = (time_t)timeout;
        it.it_value.tv_usec = (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6);
        setitimer(ITIMER_REAL, &it, NULL);
    }
    int status;
    struct rusage ru;
    while (wait4(g_child, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("runner: wait4");
            return 70;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* reap anything the child left behind in its group (ignore errors) */
    kill(-g_child, SIGKILL);

    FILE *f = fopen(result, "w");
    if (!f) {
        perror(result);
        return 70;
    }
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    fprintf(f, "exit=%d signal=%d timeout=%d time=%.6f cpu=%.6f maxrss=%ld nivcsw=%ld majflt=%ld\n",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0, g_timed_out ? 1 : 0,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9, cpu, ru.ru_maxrss,
            ru.ru_nivcsw, ru.ru_majflt);
    fclose(f);
    return 0;
}
