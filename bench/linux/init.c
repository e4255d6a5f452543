/* The Linux peer's /init: measures what Septa's bench app measures, the same way, and prints
 * the same BENCH lines with a linux_ prefix. Under QEMU -icount shift=0 one nanosecond of
 * CLOCK_MONOTONIC is one instruction. Each metric: one warm-up batch, five batches, the
 * median batch's cost per operation. Then it powers the machine off. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCHES 5
#define ITERATIONS 10000

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* Nanoseconds since reset, from the virtual counter (user-readable on Linux/arm). */
static uint64_t since_reset_ns(void) {
    uint32_t lo, hi, freq;
    __asm__ volatile("isb; mrrc p15, 1, %0, %1, c14" : "=r"(lo), "=r"(hi));
    __asm__ volatile("mrc p15, 0, %0, c14, c0, 0" : "=r"(freq));
    return (((uint64_t)hi << 32) | lo) * 1000000000ull / freq;
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *results) {
    qsort(results, BATCHES, sizeof *results, compare);
    return results[BATCHES / 2];
}

static uint64_t null_syscall(void) {
    uint64_t results[BATCHES];
    for (int b = -1; b < BATCHES; b++) {
        uint64_t start = now_ns();
        for (int i = 0; i < ITERATIONS; i++) syscall(SYS_getppid);
        if (b >= 0) results[b] = (now_ns() - start) / ITERATIONS;
    }
    return median(results);
}

/* A 16-byte message to a child process through a pipe and back through another. */
static uint64_t pipe_roundtrip(void) {
    int there[2], back[2];
    char message[16] = "0123456789abcdef";
    if (pipe(there) || pipe(back)) return 0;
    pid_t child = fork();
    if (child == 0) {
        char buffer[16];
        close(there[1]); /* so that the parent's close ends the loop below */
        while (read(there[0], buffer, 16) == 16) write(back[1], buffer, 16);
        _exit(0);
    }
    uint64_t results[BATCHES];
    for (int b = -1; b < BATCHES; b++) {
        uint64_t start = now_ns();
        for (int i = 0; i < ITERATIONS; i++) {
            write(there[1], message, 16);
            read(back[0], message, 16);
        }
        if (b >= 0) results[b] = (now_ns() - start) / ITERATIONS;
    }
    close(there[1]);
    waitpid(child, NULL, 0);
    return median(results);
}

/* sched_yield ping-pong between two processes on one CPU, per switch. */
static uint64_t yield_switch(void) {
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < ITERATIONS * (BATCHES + 2); i++) sched_yield();
        _exit(0);
    }
    uint64_t results[BATCHES];
    for (int b = -1; b < BATCHES; b++) {
        uint64_t start = now_ns();
        for (int i = 0; i < ITERATIONS; i++) sched_yield();
        if (b >= 0) results[b] = (now_ns() - start) / (2 * ITERATIONS);
    }
    kill(child, 9);
    waitpid(child, NULL, 0);
    return median(results);
}

int main(void) {
    uint64_t boot = since_reset_ns();
    printf("BENCH linux_boot_to_first_app %llu instructions\n", (unsigned long long)boot);
    printf("BENCH linux_null_syscall %llu instructions\n", (unsigned long long)null_syscall());
    printf("BENCH linux_ipc_roundtrip %llu instructions\n", (unsigned long long)pipe_roundtrip());
    printf("BENCH linux_ctx_switch %llu instructions\n", (unsigned long long)yield_switch());
    fflush(stdout);
    reboot(RB_POWER_OFF);
    return 0;
}
