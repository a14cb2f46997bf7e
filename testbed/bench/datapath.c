/* The data-path benchmark's load tool (testbed/bench/datapath.py compiles it with gcc at bench
 * time). C so that the client's own cost is microseconds, not the milliseconds a Python
 * process per connection would add to what is measured.
 *
 *   datapath serve PORT                      echo server (epoll, one thread); prints "ready"
 *   datapath latency IP PORT N               N fresh connections one after the other; per line:
 *                                            "CONNECT_NS FIRST_BYTE_NS" (connect() returned /
 *                                            first echoed byte back, from socket())
 *   datapath rps IP PORT CONNS SECONDS       CONNS keep-alive connections, one thread each,
 *                                            request/response in a loop;
 *                                            "requests N seconds S errors E"
 *   datapath cps IP PORT THREADS SECONDS     connect, one request/response, close, in a loop;
 *                                            "connections N seconds S errors E"
 *
 * Client sockets close with SO_LINGER 0 (a RST): no TIME_WAIT, so a few seconds of new
 * connections cannot run out of source ports.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 8

static struct sockaddr_in target;
static double deadline;
static long long total, errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int roundtrip(int fd) {
    char buf[MSG] = "ping1234";
    if (write(fd, buf, MSG) != MSG) return -1;
    int got = 0;
    while (got < MSG) {
        ssize_t n = read(fd, buf + got, MSG - got);
        if (n <= 0) return -1;
        got += n;
    }
    return 0;
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void hard_close(int fd) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static int serve(int port) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        perror("datapath serve: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            char buf[4096];
            ssize_t r = read(fd, buf, sizeof buf);
            if (r > 0) {
                if (write(fd, buf, r) != r) close(fd);
            } else if (r == 0 || errno != EAGAIN) {
                close(fd);  /* closing removes it from the epoll set */
            }
        }
    }
}

static int latency(int count) {
    for (int i = 0; i < count; i++) {
        long long t0 = now_ns();
        int fd = dial();
        if (fd < 0) {
            fprintf(stderr, "datapath latency: connect %d: %s\n", i, strerror(errno));
            return 1;
        }
        long long t1 = now_ns();
        if (roundtrip(fd) < 0) {
            fprintf(stderr, "datapath latency: no echo on connection %d\n", i);
            return 1;
        }
        long long t2 = now_ns();
        hard_close(fd);
        printf("%lld %lld\n", t1 - t0, t2 - t0);
    }
    return 0;
}

static void *keepalive_worker(void *arg) {
    (void)arg;
    long long done = 0, bad = 0;
    int fd = dial();
    if (fd < 0) bad++;
    else {
        while (now() < deadline) {
            if (roundtrip(fd) < 0) { bad++; break; }
            done++;
        }
        hard_close(fd);
    }
    pthread_mutex_lock(&mu);
    total += done;
    errors += bad;
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void *connect_worker(void *arg) {
    (void)arg;
    long long done = 0, bad = 0;
    while (now() < deadline) {
        int fd = dial();
        if (fd < 0) { bad++; continue; }
        if (roundtrip(fd) < 0) bad++;
        else done++;
        hard_close(fd);
    }
    pthread_mutex_lock(&mu);
    total += done;
    errors += bad;
    pthread_mutex_unlock(&mu);
    return NULL;
}

static int load(void *(*worker)(void *), int threads, double seconds, const char *what) {
    pthread_t tids[threads];
    double t0 = now();
    deadline = t0 + seconds;
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    printf("%s %lld seconds %.6f errors %lld\n", what, total, now() - t0, errors);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]));
    if (argc >= 5) {
        target.sin_family = AF_INET;
        target.sin_port = htons(atoi(argv[3]));
        if (inet_pton(AF_INET, argv[2], &target.sin_addr) != 1) {
            fprintf(stderr, "datapath: bad IPv4 address %s\n", argv[2]);
            return 2;
        }
        if (argc == 5 && !strcmp(argv[1], "latency")) return latency(atoi(argv[4]));
        if (argc == 6 && !strcmp(argv[1], "rps"))
            return load(keepalive_worker, atoi(argv[4]), atof(argv[5]), "requests");
        if (argc == 6 && !strcmp(argv[1], "cps"))
            return load(connect_worker, atoi(argv[4]), atof(argv[5]), "connections");
    }
    fprintf(stderr, "usage: datapath serve PORT | latency IP PORT N | rps IP PORT CONNS SECONDS"
                    " | cps IP PORT THREADS SECONDS\n");
    return 2;
}
