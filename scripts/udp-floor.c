/*
 * udp-floor: the cheapest userspace UDP reflector we can write, and a load generator for
 * it, to measure the kernel/wake-up floor under face-echo's CPU per echoed packet.
 * Built and driven by scripts/bench-floor.sh.
 *
 *   udp-floor reflect PORT
 *   udp-floor reflect-blocking PORT
 *   udp-floor load PORT PEERS SECONDS [PPS_PER_PEER] [SIZE]
 *
 * reflect echoes every datagram to 127.0.0.1:PORT back to its source, unchanged. It does
 * per datagram what the server's media plane does (poll, recvmmsg, one sendmsg each) and
 * nothing else: no SRTP, no parsing, no copies, so its CPU is the floor for that shape.
 * reflect-blocking is the cheapest shape of all: it sleeps in a blocking recvmmsg
 * (MSG_WAITFORONE), not in poll, so a wake-up costs one receive and one send.
 *
 * load sends as the project's load generator does: PEERS sockets (one per peer, so the
 * reflector sees PEERS sources), each sending at PPS_PER_PEER (default 39: ~1.3 packets per
 * frame at 30 fps) datagrams of SIZE bytes (default 1000), the peers' sends spread evenly
 * over the interval. It prints one JSON line: sent, echoed, loss and RTT percentiles.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
/* Large enough for any UDP datagram, so nothing is echoed truncated. */
#define MAX_DATAGRAM 65536
#define SOCKET_BUFFER (4 << 20)
/* Echoes still in flight when sending stops get this long to arrive (as the load
 * generator's drain). */
#define DRAIN_NS 500000000ull

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: udp-floor reflect PORT\n"
          "       udp-floor load PORT PEERS SECONDS [PPS_PER_PEER] [SIZE]\n");
  exit(2);
}

static long parse(const char *text, long min, long max) {
  char *end;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno || end == text || *end || value < min || value > max) {
    fprintf(stderr, "udp-floor: bad number %s (%ld..%ld)\n", text, min, max);
    usage();
  }
  return value;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

/* ---- reflect ---- */

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static int reflect(int port, int blocking) {
  /* No SA_RESTART: the signal must interrupt the blocking poll so the loop sees it. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  /* Non-blocking so a full send buffer drops the echo instead of stalling the
   * loop, as a server's send would. */
  int fd = socket(AF_INET, SOCK_DGRAM | (blocking ? 0 : SOCK_NONBLOCK) | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int size = SOCKET_BUFFER;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) < 0) die("SO_RCVBUF");
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) < 0) die("SO_SNDBUF");
  struct sockaddr_in addr = loopback(port);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");

  static char bufs[BATCH][MAX_DATAGRAM];
  static struct sockaddr_in from[BATCH];
  static struct iovec iovs[BATCH];
  static struct mmsghdr msgs[BATCH];
  for (int i = 0; i < BATCH; i++) {
    iovs[i].iov_base = bufs[i];
    iovs[i].iov_len = MAX_DATAGRAM;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_iov = &iovs[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }

  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  while (!stopping) {
    if (!blocking && poll(&pfd, 1, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    /* Drain what is queued in batches; a short batch means the queue is empty, and a
     * further recvmmsg would only find nothing (the server also goes back to poll). */
    for (;;) {
      for (int i = 0; i < BATCH; i++) msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      int n = recvmmsg(fd, msgs, BATCH, blocking ? MSG_WAITFORONE : MSG_DONTWAIT, NULL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        die("recvmmsg");
      }
      for (int i = 0; i < n; i++) {
        struct iovec iov = {.iov_base = bufs[i], .iov_len = msgs[i].msg_len};
        struct msghdr out = {
            .msg_name = &from[i],
            .msg_namelen = msgs[i].msg_hdr.msg_namelen,
            .msg_iov = &iov,
            .msg_iovlen = 1,
        };
        /* A failed echo is a lost datagram; the load side counts those. */
        (void)sendmsg(fd, &out, MSG_DONTWAIT);
      }
      if (n < BATCH) break;
    }
  }
  close(fd);
  return 0;
}

/* ---- load ---- */

/* What each datagram starts with; the rest of it is padding up to SIZE. */
struct header {
  uint32_t peer;
  uint32_t seq;
  uint64_t sent_ns;
};

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, in µs. */
static double percentile_us(const uint32_t *sorted, size_t n, double p) {
  if (n == 0) return 0;
  double exact = p * (double)n;
  size_t rank = (size_t)exact;
  if ((double)rank < exact || rank < 1) rank++;
  if (rank > n) rank = n;
  return sorted[rank - 1] / 1000.0;
}

static void arm(int tfd, uint64_t at_ns) {
  struct itimerspec spec;
  memset(&spec, 0, sizeof spec);
  spec.it_value.tv_sec = (time_t)(at_ns / 1000000000ull);
  spec.it_value.tv_nsec = (long)(at_ns % 1000000000ull);
  if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &spec, NULL) < 0) die("timerfd_settime");
}

static int load(int port, int peers, int seconds, int pps, int size) {
  /* One thread: the sends are paced by a timerfd in the same epoll set as the peers'
   * sockets, so this process wakes about once per send and once per echo and adds as
   * little as it can to the machine the reflector is measured on. */
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  int *fds = calloc((size_t)peers, sizeof *fds);
  uint32_t *seqs = calloc((size_t)peers, sizeof *seqs);
  if (!fds || !seqs) die("calloc");
  struct sockaddr_in server = loopback(port);
  for (int i = 0; i < peers; i++) {
    fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fds[i] < 0) die("socket");
    /* Its own ephemeral port, so the reflector sees PEERS distinct sources. */
    struct sockaddr_in any = loopback(0);
    if (bind(fds[i], (struct sockaddr *)&any, sizeof any) < 0) die("bind");
    if (connect(fds[i], (struct sockaddr *)&server, sizeof server) < 0) die("connect");
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) die("epoll_ctl");
  }
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) die("timerfd_create");
  struct epoll_event tev = {.events = EPOLLIN, .data.u32 = (uint32_t)peers};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) < 0) die("epoll_ctl");

  /* The sends of all peers form one schedule: slot j belongs to peer j % PEERS at
   * start + j × interval / PEERS, so peer i's k-th send is at start + k × interval +
   * interval × i / PEERS, evenly staggered and never in step. */
  uint64_t slots_per_s = (uint64_t)pps * (uint64_t)peers;
  uint64_t total_slots = slots_per_s * (uint64_t)seconds;
  /* One RTT sample per datagram is kept; cap that at 1 GB. */
  if (total_slots > (1ull << 28)) {
    fprintf(stderr, "udp-floor: PEERS × PPS_PER_PEER × SECONDS is too many datagrams\n");
    return 2;
  }
  size_t capacity = (size_t)total_slots + 1;
  uint32_t *rtts = malloc(capacity * sizeof *rtts);
  char *buf = calloc(1, MAX_DATAGRAM);
  if (!rtts || !buf) die("malloc");

  uint64_t start = now_ns() + 10000000ull; /* a moment to be ready */
  uint64_t end = start + (uint64_t)seconds * 1000000000ull;
  uint64_t next_slot = 0;
  int draining = 0;
  uint64_t sent = 0, echoed = 0, send_errors = 0, recv_errors = 0, strays = 0;
  arm(tfd, start);

  struct epoll_event events[64];
  for (int done = 0; !done;) {
    int n = epoll_wait(ep, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int e = 0; e < n; e++) {
      uint32_t id = events[e].data.u32;
      if (id == (uint32_t)peers) {
        uint64_t expirations;
        if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) die("read timerfd");
        if (draining) {
          done = 1;
          break;
        }
        /* Late wake-ups send every slot now due rather than skip them, so the count
         * sent does not depend on how busy the machine was. */
        uint64_t now = now_ns();
        while (next_slot < total_slots) {
          uint64_t at = start + next_slot * 1000000000ull / slots_per_s;
          if (at > now) break;
          int peer = (int)(next_slot % (uint64_t)peers);
          struct header h = {.peer = (uint32_t)peer, .seq = seqs[peer]++, .sent_ns = now_ns()};
          memcpy(buf, &h, sizeof h);
          if (send(fds[peer], buf, (size_t)size, 0) == size)
            sent++;
          else
            send_errors++;
          next_slot++;
        }
        if (next_slot < total_slots) {
          arm(tfd, start + next_slot * 1000000000ull / slots_per_s);
        } else {
          draining = 1;
          arm(tfd, end + DRAIN_NS);
        }
        continue;
      }
      /* Read until empty: a peer's socket rarely holds more than one echo. */
      for (;;) {
        ssize_t got = recv(fds[id], buf, MAX_DATAGRAM, MSG_DONTWAIT);
        if (got < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          /* e.g. ECONNREFUSED: nothing listened on PORT when a datagram arrived. */
          recv_errors++;
          continue;
        }
        uint64_t now = now_ns();
        struct header h;
        memcpy(&h, buf, sizeof h);
        if (got != size || h.peer != id || echoed >= capacity) {
          strays++;
          continue;
        }
        uint64_t rtt = now - h.sent_ns;
        rtts[echoed++] = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
      }
    }
  }

  qsort(rtts, (size_t)echoed, sizeof *rtts, cmp_u32);
  double loss = sent ? 1.0 - (double)echoed / (double)sent : 0;
  printf("{\"peers\":%d,\"seconds\":%d,\"sent\":%llu,\"echoed\":%llu,\"loss\":%.6f,"
         "\"rtt_us_p50\":%.1f,\"rtt_us_p99\":%.1f}\n",
         peers, seconds, (unsigned long long)sent, (unsigned long long)echoed, loss,
         percentile_us(rtts, (size_t)echoed, 0.50), percentile_us(rtts, (size_t)echoed, 0.99));
  if (send_errors || recv_errors || strays)
    fprintf(stderr, "udp-floor: %llu send errors, %llu receive errors, %llu unexpected datagrams\n",
            (unsigned long long)send_errors, (unsigned long long)recv_errors,
            (unsigned long long)strays);
  for (int i = 0; i < peers; i++) close(fds[i]);
  close(tfd);
  close(ep);
  free(fds);
  free(seqs);
  free(rtts);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "reflect") == 0) return reflect((int)parse(argv[2], 1, 65535), 0);
  if (argc == 3 && strcmp(argv[1], "reflect-blocking") == 0) return reflect((int)parse(argv[2], 1, 65535), 1);
  if (argc >= 5 && argc <= 7 && strcmp(argv[1], "load") == 0) {
    int port = (int)parse(argv[2], 1, 65535);
    int peers = (int)parse(argv[3], 1, 100000);
    int seconds = (int)parse(argv[4], 1, 3600);
    int pps = argc > 5 ? (int)parse(argv[5], 1, 1000000) : 39;
    int size = argc > 6 ? (int)parse(argv[6], (long)sizeof(struct header), 65507) : 1000;
    return load(port, peers, seconds, pps, size);
  }
  usage();
  return 2;
}
