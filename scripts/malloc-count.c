/* Counts a process's heap allocations, to divide by what it did (scripts/bench-alloc.sh):
 * LD_PRELOAD=target/bench/malloc-count.so face-echo ...; then SIGUSR2 makes it write
 * "malloc-count THREADNAME N\n" lines to stderr, one per thread that allocated (N so far),
 * and "malloc-count total N\n". Works for any binary that allocates through glibc's malloc
 * (Rust's System allocator does), so two builds, or another server, compare alike.
 *   cc -O2 -shared -fPIC -o target/bench/malloc-count.so scripts/malloc-count.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#define SLOTS 256
/* Per thread: its id, and its count (its name is read when reporting). */
static struct { long tid; atomic_ulong count; } threads[SLOTS];
static atomic_int used;
static atomic_ulong overflow;
static __thread int slot = -1;

static void count(void) {
  if (slot < 0) {
    int index = atomic_fetch_add(&used, 1);
    if (index >= SLOTS) {
      atomic_fetch_add_explicit(&overflow, 1, memory_order_relaxed);
      return;
    }
    threads[index].tid = syscall(SYS_gettid);
    slot = index;
  }
  atomic_fetch_add_explicit(&threads[slot].count, 1, memory_order_relaxed);
}

void *malloc(size_t size) { count(); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { count(); return __libc_calloc(n, size); }
void *realloc(void *ptr, size_t size) { count(); return __libc_realloc(ptr, size); }
void free(void *ptr) { __libc_free(ptr); }
void *memalign(size_t align, size_t size) { count(); return __libc_memalign(align, size); }
void *aligned_alloc(size_t align, size_t size) { count(); return __libc_memalign(align, size); }
int posix_memalign(void **out, size_t align, size_t size) {
  count();
  void *ptr = __libc_memalign(align, size);
  if (!ptr) return ENOMEM;
  *out = ptr;
  return 0;
}

/* Async-signal-safe: open, read, write and digits by hand. */
static size_t digits_of(unsigned long n, char *out) {
  char digits[24];
  size_t d = 0, at = 0;
  do { digits[d++] = (char)('0' + n % 10); n /= 10; } while (n);
  while (d) out[at++] = digits[--d];
  return at;
}

/* Thread `tid`'s name (/proc/self/task/TID/comm) into `name` (17 bytes). */
static void thread_name(long tid, char *name) {
  char path[64] = "/proc/self/task/";
  size_t at = 16 + digits_of((unsigned long)tid, path + 16);
  memcpy(path + at, "/comm", 6);
  name[0] = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return;
  ssize_t n = read(fd, name, 16);
  close(fd);
  if (n <= 0) return;
  name[n] = 0;
  for (char *c = name; *c; c++) if (*c == '\n') *c = 0; else if (*c == ' ') *c = '_';
}

static void put(const char *text, unsigned long n) {
  char line[64];
  size_t len = strlen(text);
  memcpy(line, "malloc-count ", 13);
  memcpy(line + 13, text, len);
  size_t at = 13 + len;
  line[at++] = ' ';
  at += digits_of(n, line + at);
  line[at++] = '\n';
  ssize_t ignored = write(2, line, at);
  (void)ignored;
}

static void report(int signal) {
  (void)signal;
  unsigned long total = atomic_load(&overflow);
  int count_used = atomic_load(&used);
  for (int i = 0; i < count_used && i < SLOTS; i++) {
    char name[17];
    thread_name(threads[i].tid, name);
    unsigned long n = atomic_load(&threads[i].count);
    total += n;
    if (n) put(name[0] ? name : "ended", n);
  }
  put("total", total);
}

__attribute__((constructor)) static void install(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = report;
  action.sa_flags = SA_RESTART;
  sigaction(SIGUSR2, &action, 0);
}
