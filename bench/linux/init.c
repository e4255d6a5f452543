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
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/perf_event.h>

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

/* ---- TCP through virtio-net, as Septa's netbench: devhost (10.0.2.100) :10 sends 1 MiB,
 * :11 takes 1 MiB, :7 echoes. Counted with the PMU's instructions counter, system-wide on
 * CPU 0 (kernel included), which skips the idle time icount warps over. */

#define MODULES "/lib/modules/"
#define MIB (1 << 20)

static int load_module(const char *name) {
    char path[128];
    snprintf(path, sizeof path, MODULES "%s.ko", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int result = syscall(SYS_finit_module, fd, "", 0);
    close(fd);
    return result;
}

static int set_address(int s, unsigned long request, const char *address) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "eth0");
    struct sockaddr_in *in = (struct sockaddr_in *)&ifr.ifr_addr;
    in->sin_family = AF_INET;
    inet_pton(AF_INET, address, &in->sin_addr);
    return ioctl(s, request, &ifr);
}

static int network_up(void) {
    const char *modules[] = {"failover", "net_failover", "virtio_net", "virtio_mmio"};
    for (unsigned i = 0; i < sizeof modules / sizeof *modules; i++)
        if (load_module(modules[i]) != 0) {
            printf("linux-peer: loading %s failed\n", modules[i]);
            return -1;
        }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    for (int tries = 0;; tries++) { /* the card appears once virtio_mmio has probed it */
        memset(&ifr, 0, sizeof ifr);
        strcpy(ifr.ifr_name, "eth0");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) break;
        if (tries == 100) { printf("linux-peer: no eth0\n"); return -1; }
        usleep(10000);
    }
    if (set_address(s, SIOCSIFADDR, "10.0.2.15") || set_address(s, SIOCSIFNETMASK, "255.255.255.0")) return -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr)) return -1;
    close(s);
    return 0;
}

static int instructions_fd = -1;

static uint64_t instructions(void) {
    uint64_t count = 0;
    if (read(instructions_fd, &count, sizeof count) != sizeof count) return 0;
    return count;
}

static int connect_to(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "10.0.2.100", &to.sin_addr);
    if (connect(s, (struct sockaddr *)&to, sizeof to)) { close(s); return -1; }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

static void tcp_benchmarks(void) {
    struct perf_event_attr attr = {.type = PERF_TYPE_HARDWARE, .size = sizeof attr,
                                   .config = PERF_COUNT_HW_INSTRUCTIONS};
    instructions_fd = syscall(SYS_perf_event_open, &attr, -1, 0, -1, 0);
    if (instructions_fd < 0) { printf("linux-peer: no instructions counter (perf_event_open)\n"); return; }
    if (network_up()) { printf("linux-peer: network not up\n"); return; }
    static char buffer[64 * 1024];
    int s = connect_to(10);
    if (s >= 0) {
        uint64_t start = instructions(), total = 0;
        ssize_t n;
        while ((n = read(s, buffer, sizeof buffer)) > 0) total += n;
        uint64_t spent = instructions() - start;
        close(s);
        if (total == MIB) {
            printf("BENCH linux_tcp_recv_1mib %llu instructions\n", (unsigned long long)spent);
            printf("BENCH linux_tcp_recv_per_kib %llu instructions/KiB\n", (unsigned long long)spent / 1024);
        }
    }
    s = connect_to(11);
    if (s >= 0) {
        memset(buffer, 0x5a, sizeof buffer);
        uint64_t start = instructions(), sent = 0;
        while (sent < MIB) {
            ssize_t n = write(s, buffer, sizeof buffer);
            if (n <= 0) break;
            sent += n;
        }
        while (read(s, buffer, sizeof buffer) > 0) {}
        uint64_t spent = instructions() - start;
        close(s);
        printf("BENCH linux_tcp_send_1mib %llu instructions\n", (unsigned long long)spent);
        printf("BENCH linux_tcp_send_per_kib %llu instructions/KiB\n", (unsigned long long)spent / 1024);
    }
    uint64_t costs[9];
    int done = 0;
    for (int i = 0; i < 9; i++) {
        char message[64], back[64];
        memset(message, 0xa5, sizeof message);
        uint64_t start = instructions();
        s = connect_to(7);
        if (s < 0) break;
        write(s, message, sizeof message);
        size_t got = 0;
        while (got < sizeof back) {
            ssize_t n = read(s, back + got, sizeof back - got);
            if (n <= 0) break;
            got += n;
        }
        costs[i] = instructions() - start;
        close(s);
        done++;
    }
    if (done == 9) {
        qsort(costs, 9, sizeof *costs, compare);
        printf("BENCH linux_tcp_connect_echo64 %llu instructions\n", (unsigned long long)costs[4]);
    }
}

int main(void) {
    uint64_t boot = since_reset_ns();
    printf("BENCH linux_boot_to_first_app %llu instructions\n", (unsigned long long)boot);
    printf("BENCH linux_null_syscall %llu instructions\n", (unsigned long long)null_syscall());
    printf("BENCH linux_ipc_roundtrip %llu instructions\n", (unsigned long long)pipe_roundtrip());
    printf("BENCH linux_ctx_switch %llu instructions\n", (unsigned long long)yield_switch());
    fflush(stdout);
    tcp_benchmarks();
    fflush(stdout);
    reboot(RB_POWER_OFF);
    return 0;
}
