// The C source of the launcher's reaper (compiled by reaper.ts with bun:ffi's TinyCC, no
// headers, only libc's syscall() and clone() handed in as pointers). It is forked, not
// started: the calling process (the agent) forks a copy of itself that unmaps everything of
// the runtime it was forked from (the binary, the JavaScript heap, the other threads' stacks)
// and keeps only this code, its arena, libc's text and its thread's TLS; that copy forks the
// reaper and exits. The reaper is then a process of a few pages (PSS ~0.1 MiB against ~10 for
// a whole runtime) that needs no start of the binary. It makes itself a child subreaper,
// starts the launcher with a pipe on its fd 3, and reads the launcher's records of which pid
// is which container; when the launcher dies, the kernel hands its children to the reaper,
// which writes each one's status file when it ends, and exits once the launcher is gone and
// every container it knew of is recorded. Only system calls, no allocation, no lock: a child
// forked from a threaded process must not touch anything another thread may have held.
// (Over 400 lines: one C translation unit; the fork, the unmapping and the reaper's loop
// share the arena, the log line and the syscall table.)

/** Record kinds the launcher writes to its reaper (16-byte header, then the file, then the key). */
export const ReaperRecord = {
  /** A container's process started: pid, status file, key. */
  STARTED: 1,
  /** It ended with `status`, which the launcher could not write down yet. */
  EXITED: 2,
  /** Its status file is written: forget it. */
  DONE: 3,
} as const;

export const RECORD_HEADER = 16;
export const MAX_STATUS_FILE = 4095;
export const MAX_KEY = 255;

/** The start request's header (u64 fields, then NUL-terminated strings): see struct req. */
export const REQ_FIELDS = 8;

/** System call numbers and open(2) flags that differ by architecture: name, x86_64, arm64. */
const BY_ARCH = `
read 0 63
write 1 64
close 3 57
openat 257 56
ppoll 271 73
renameat2 316 276
wait4 61 260
waitid 247 95
exit_group 231 94
munmap 11 215
madvise 28 233
prctl 157 167
setsid 112 157
execve 59 221
rt_sigprocmask 14 135
rt_sigaction 13 134
signalfd4 289 74
unlinkat 263 35
dup3 292 24
pipe2 293 59
clock_gettime 228 113
close_range 436 436
flock 73 32
statx 332 291
getpid 39 172
mremap 25 216
pwrite64 18 68
mmap 9 222
fcntl 72 25
prlimit64 302 261
O_DIRECTORY 0o200000 0o40000
O_NOFOLLOW 0o400000 0o100000
`;

export function reaperSource(arch: string): string {
  const column = arch === "arm64" ? 2 : 1;
  const defines = BY_ARCH.trim()
    .split("\n")
    .map((row) => {
      const cells = row.split(" ");
      return `#define ${cells[0]!.startsWith("O_") ? cells[0] : `NR_${cells[0]}`} ${cells[column]!.replace(/^0o/, "0")}`;
    })
    .join("\n");
  return `${defines}
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef long i64;

static i64 (*f_syscall)(i64, ...);
static int (*f_clone)(int (*)(void *), void *, int, void *, ...);
static int *(*f_errno)(void);

#define O_RDONLY 0
#define O_WRONLY 1
#define O_RDWR 2
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_NONBLOCK 04000
#define O_CLOEXEC 02000000
#define O_PATH 010000000
#define AT_FDCWD -100
#define AT_EMPTY_PATH 0x1000
#define SIGCHLD 17
#define SIGPIPE 13
#define WNOHANG 1
#define WEXITED 4
#define WNOWAIT 0x01000000
#define WALL 0x40000000
#define P_PID 1
#define PR_SET_NAME 15
#define PR_SET_CHILD_SUBREAPER 36
#define MADV_DONTNEED 4
#define LOCK_SH 1
#define EINTR 4
#define EAGAIN 11
#define ECHILD 10
#define ENOENT 2
#define PAGE 4096UL

/* The arena: one private mapping the agent makes, holding the request and everything the
   reaper's processes use. Offsets: */
#define STACK_BYTES 65536UL
#define A_REQ 0UL                 /* the request from JavaScript (copied in) */
#define REQ_BYTES 65536UL
#define A_STACK1 (A_REQ + REQ_BYTES)           /* the first fork's stack */
#define A_STACK2 (A_STACK1 + STACK_BYTES)      /* the reaper's */
#define A_STACK3 (A_STACK2 + STACK_BYTES)      /* the launcher's, until its exec */
#define A_MAPS (A_STACK3 + STACK_BYTES)        /* /proc/self/maps, a chunk at a time */
#define MAPS_BYTES 65536UL
#define A_RANGES (A_MAPS + MAPS_BYTES)         /* what to unmap: start, end, file */
#define MAX_RANGES 16384UL
#define A_MSG (A_RANGES + MAX_RANGES * 24UL)   /* the launcher's records, as read */
#define MSG_BYTES 16384UL
#define A_LOG (A_MSG + MSG_BYTES)              /* one log line */
#define LOG_BYTES 8192UL
#define A_PATH (A_LOG + LOG_BYTES)             /* a temp file's path */
#define ARENA_BYTES (A_PATH + 8192UL)

/* The request: u64 fields, then the strings (exe path, argv..., title parts..., lock path). */
struct req {
  u64 log_fd;       /* becomes the reaper's and the launcher's fd 2 */
  u64 argc;         /* the launcher's argv */
  u64 titlec;       /* the reaper's command line, as ps shows it */
  u64 arg_start;    /* the caller's argv and environment (from /proc/self/stat) */
  u64 arg_end;
  u64 env_end;
  u64 tls;          /* an address in the caller's thread's TLS (errno's) */
  u64 strings_len;
  char strings[];
};

struct known {
  int pid;
  int status;
  u32 flags;
  u32 delay_ms;
  i64 next_ms;
  char key[${MAX_KEY + 1}];
  char file[${MAX_STATUS_FILE + 1}];
};
#define K_FILE 1      /* the launcher said which container it is */
#define K_STATUS 2    /* its status is known (we reaped it, or the launcher told) */
#define K_PENDING 4   /* its status file could not be written yet: tried again at next_ms */

static char *arena;
static struct req *rq;
static int launcher_pid;
static struct known *table;
static u64 table_cap, table_len;
static int msg_fd = -1, msg_w = -1;
static u64 msg_len;
/* The caller's report pipe (the first fork writes 0, or -errno, when the reaper runs). */
static int report_fd;

static i64 sys(i64 rc) { return rc < 0 ? -(i64)*f_errno() : rc; }
#define SYS0(n) sys(f_syscall((i64)(n)))
#define SYS1(n, a) sys(f_syscall((i64)(n), (i64)(a)))
#define SYS2(n, a, b) sys(f_syscall((i64)(n), (i64)(a), (i64)(b)))
#define SYS3(n, a, b, c) sys(f_syscall((i64)(n), (i64)(a), (i64)(b), (i64)(c)))
#define SYS4(n, a, b, c, d) sys(f_syscall((i64)(n), (i64)(a), (i64)(b), (i64)(c), (i64)(d)))
#define SYS5(n, a, b, c, d, e) sys(f_syscall((i64)(n), (i64)(a), (i64)(b), (i64)(c), (i64)(d), (i64)(e)))
#define SYS6(n, a, b, c, d, e, f) sys(f_syscall((i64)(n), (i64)(a), (i64)(b), (i64)(c), (i64)(d), (i64)(e), (i64)(f)))
/* PROT_READ | PROT_WRITE; MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE */
#define MAP_NEW(size) SYS6(NR_mmap, 0, (size), 3, 0x02 | 0x20 | 0x4000, -1, 0)

static u64 slen(const char *s) { u64 n = 0; while (s[n]) n++; return n; }
static void copy(char *d, const char *s, u64 n) { u64 i; for (i = 0; i < n; i++) d[i] = s[i]; }
static void zero(char *d, u64 n) { u64 i; for (i = 0; i < n; i++) d[i] = 0; }

/* ---- the log: "ucr launcher reaper[PID] 2026-12-02T07:00:00.000Z: ...", one write per line */
static u64 ll;
static void put(const char *s) { u64 n = slen(s); if (ll + n > LOG_BYTES - 2) n = LOG_BYTES - 2 - ll; copy(arena + A_LOG + ll, s, n); ll += n; }
static void putn(i64 v) {
  char b[24]; int i = 23; int neg = v < 0; u64 u = neg ? (u64)(-v) : (u64)v;
  b[i] = 0;
  do { b[--i] = '0' + (char)(u % 10); u /= 10; } while (u);
  if (neg) b[--i] = '-';
  put(b + i);
}
static void put2(i64 v) { char b[3]; b[0] = '0' + (char)(v / 10 % 10); b[1] = '0' + (char)(v % 10); b[2] = 0; put(b); }
static i64 now_ms(int clock) {
  i64 ts[2];
  if (SYS2(NR_clock_gettime, clock, ts) < 0) return 0;
  return ts[0] * 1000 + ts[1] / 1000000;
}
static void begin(void) {
  i64 ms = now_ms(0), s = ms / 1000, days = s / 86400, sod = s % 86400;
  /* civil date from days since 1970-01-01 (H. Hinnant's algorithm) */
  i64 z = days + 719468, era = z / 146097, doe = z - era * 146097;
  i64 yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365, y = yoe + era * 400;
  i64 doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
  i64 d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) y++;
  ll = 0;
  put("ucr launcher reaper["); putn(SYS0(NR_getpid)); put("] ");
  putn(y); put("-"); put2(m); put("-"); put2(d); put("T"); put2(sod / 3600); put(":"); put2(sod / 60 % 60); put(":");
  put2(sod % 60); put("."); putn(ms % 1000 / 100); put2(ms % 100); put("Z: ");
}
static void end(void) {
  arena[A_LOG + ll++] = '\\n';
  SYS3(NR_write, 2, arena + A_LOG, ll);
}
static void put_errno(i64 e) { put("errno "); putn(e < 0 ? -e : e); }
static void say_container(struct known *k) { put("container "); put(k->key); put(" (pid "); putn(k->pid); put(")"); }

/* ---- the known containers: a table that grows by mremap */
static struct known *find(int pid) {
  u64 i;
  for (i = 0; i < table_len; i++) if (table[i].pid == pid) return &table[i];
  return 0;
}
static struct known *add(int pid) {
  struct known *k;
  if (table_len == table_cap) {
    u64 cap = table_cap ? table_cap * 2 : 64;
    i64 p = table ? SYS4(NR_mremap, table, table_cap * sizeof(struct known), cap * sizeof(struct known), 1 /* MREMAP_MAYMOVE */)
                  : MAP_NEW(cap * sizeof(struct known));
    if (p < 0) { begin(); put("cannot grow the table of containers: "); put_errno(p); end(); return 0; }
    table = (struct known *)p;
    table_cap = cap;
  }
  k = &table[table_len++];
  k->pid = pid; k->status = 0; k->flags = 0; k->delay_ms = 0; k->next_ms = 0; k->key[0] = 0; k->file[0] = 0;
  return k;
}
static void forget(struct known *k) {
  struct known *last = &table[table_len - 1];
  if (k != last) copy((char *)k, (char *)last, sizeof(struct known));
  table_len--;
}

/* ---- status files, as the launcher writes them (state.ts): into an empty file in place, else
   a temp file renamed over it; a failure is tried again, with backoff, while the directory exists */
static int dir_exists(char *file) {
  u64 n = slen(file), i = n;
  i64 fd;
  while (i > 0 && file[i - 1] != '/') i--;
  if (i <= 1) return 1;
  file[i - 1] = 0;
  fd = SYS4(NR_openat, AT_FDCWD, file, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  file[i - 1] = '/';
  if (fd >= 0) SYS1(NR_close, fd);
  return fd >= 0;
}
static i64 write_status(char *file, const char *text, u64 n) {
  i64 fd = SYS4(NR_openat, AT_FDCWD, file, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0), rc;
  char *tmp = arena + A_PATH;
  u64 fl;
  if (fd >= 0) {
    /* struct statx: stx_mode (u16) at 0x1c, stx_size (u64) at 0x28; STATX_TYPE | STATX_SIZE */
    u64 sx[32];
    rc = SYS5(NR_statx, fd, "", AT_EMPTY_PATH, 0x1 | 0x200, sx);
    if (rc == 0 && (*(u16 *)((char *)sx + 0x1c) & 0170000) == 0100000 && *(u64 *)((char *)sx + 0x28) == 0) {
      rc = SYS4(NR_pwrite64, fd, text, n, 0);
      SYS1(NR_close, fd);
      if (rc == (i64)n) return 0;
      if (rc >= 0) rc = -5; /* EIO: short */
      return rc;
    }
    SYS1(NR_close, fd);
  }
  fl = slen(file);
  if (fl + 32 > 8192) return -36; /* ENAMETOOLONG */
  copy(tmp, file, fl);
  copy(tmp + fl, ".tmp-reaper", 11);
  tmp[fl + 11] = 0;
  fd = SYS4(NR_openat, AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return fd;
  rc = SYS3(NR_write, fd, text, n);
  SYS1(NR_close, fd);
  if (rc == (i64)n) rc = SYS5(NR_renameat2, AT_FDCWD, tmp, AT_FDCWD, file, 0);
  else if (rc >= 0) rc = -5;
  if (rc < 0) SYS3(NR_unlinkat, AT_FDCWD, tmp, 0);
  return rc < 0 ? rc : 0;
}
static int pending;
/* Tries k's status file; false while it stays pending. */
static int attempt(struct known *k) {
  char text[16];
  u64 n = 0;
  i64 v = k->status, rc, div = 1000000000;
  int started = 0;
  if (v < 0) { text[n++] = '-'; v = -v; }
  for (; div > 0; div /= 10) {
    if (v / div || started || div == 1) { text[n++] = '0' + (char)(v / div % 10); started = 1; }
  }
  text[n++] = '\\n';
  rc = write_status(k->file, text, n);
  if (rc == 0) {
    if (k->flags & K_PENDING) { begin(); say_container(k); put(": "); put(k->file); put(" written after all"); end(); }
    return 1;
  }
  if (!dir_exists(k->file)) {
    begin(); say_container(k); put(": gave up writing "); put(k->file); put(": its directory is gone"); end();
    return 1;
  }
  if (!(k->flags & K_PENDING)) {
    begin(); say_container(k); put(": cannot write "); put(k->file); put(" ("); put_errno(rc); put("); trying again"); end();
    k->flags |= K_PENDING;
    k->delay_ms = 100;
    pending++;
  } else {
    k->delay_ms = k->delay_ms * 2 > 5000 ? 5000 : k->delay_ms * 2;
  }
  k->next_ms = now_ms(1) + k->delay_ms;
  return 0;
}
static void record(struct known *k) {
  begin(); say_container(k); put(" ended with status "); putn(k->status); put(" after its launcher; recording it"); end();
  if (attempt(k)) forget(k);
}

/* ---- the reaper's loop */
static int gone;
static void ended(int pid, int status) {
  struct known *k;
  if (pid == launcher_pid) {
    if (status != 0) { begin(); put("the launcher (pid "); putn(pid); put(") ended with wait status "); putn(status); put("; its containers are in my care"); end(); }
    launcher_pid = -1;
    return;
  }
  k = find(pid);
  if (!k) {
    /* a warm init stage, a launch the launcher died in the middle of, or a record not read yet */
    if (gone) return;
    k = add(pid);
    if (!k) return;
  }
  k->status = status;
  k->flags |= K_STATUS;
  if (gone) {
    if (k->flags & K_FILE) record(k);
    else forget(k);
  }
}
static void reap_all(void) {
  int status;
  i64 pid;
  for (;;) {
    status = 0;
    pid = SYS4(NR_wait4, -1, &status, WNOHANG | WALL, 0);
    if (pid <= 0) return;
    ended((int)pid, status);
  }
}
static void on_record(u32 kind, int pid, int status, const char *file, u64 flen, const char *key, u64 klen) {
  struct known *k = find(pid);
  if (kind == 1) {
    if (!k) k = add(pid);
    if (!k) return;
    copy(k->file, file, flen); k->file[flen] = 0;
    copy(k->key, key, klen); k->key[klen] = 0;
    k->flags |= K_FILE;
  } else if (kind == 2) {
    if (k) { k->status = status; k->flags |= K_STATUS; }
  } else if (kind == 3) {
    if (k && !(k->flags & K_PENDING)) forget(k);
  }
}
/* Reads what the launcher wrote; false at its end (EOF, or an error: it is gone either way). */
static int read_records(void) {
  char *buf = arena + A_MSG;
  i64 n = SYS3(NR_read, msg_fd, buf + msg_len, MSG_BYTES - msg_len);
  u64 at = 0;
  if (n == -EINTR || n == -EAGAIN) return 1;
  if (n <= 0) {
    if (n < 0) { begin(); put("reading the launcher's records failed: "); put_errno(n); end(); }
    return 0;
  }
  msg_len += (u64)n;
  while (msg_len - at >= ${RECORD_HEADER}) {
    u32 *h = (u32 *)(buf + at);
    u64 flen = h[3] & 0xffff, klen = h[3] >> 16;
    if (h[0] < 1 || h[0] > 3 || flen > ${MAX_STATUS_FILE} || klen > ${MAX_KEY}) {
      begin(); put("a malformed record from the launcher; its records are no longer read"); end();
      return 0;
    }
    if (msg_len - at < ${RECORD_HEADER} + flen + klen) break;
    on_record(h[0], (int)h[1], (int)h[2], buf + at + ${RECORD_HEADER}, flen, buf + at + ${RECORD_HEADER} + flen, klen);
    at += ${RECORD_HEADER} + flen + klen;
  }
  copy(buf, buf + at, msg_len - at);
  msg_len -= at;
  return 1;
}
/* The launcher is gone (its records ended and it is reaped): what it left is ours. */
static void settle(void) {
  u64 i = 0;
  reap_all();
  gone = 1;
  while (i < table_len) {
    struct known *k = &table[i];
    if (k->flags & K_PENDING) { i++; continue; }
    if (!(k->flags & K_FILE)) { forget(k); continue; }
    if (k->flags & K_STATUS) {
      u64 before = table_len;
      record(k);
      if (table_len < before) continue;
      i++;
      continue;
    }
    {
      /* Not reaped by us, no status from the launcher: running, as our child now, or the
         launcher reaped it and died before saying so. */
      u64 info[16];
      i64 rc = SYS5(NR_waitid, P_PID, k->pid, info, WEXITED | WNOHANG | WNOWAIT | WALL, 0);
      if (rc == -ECHILD) {
        begin(); say_container(k); put(" ended before its launcher, which left no word of its status"); end();
        forget(k);
        continue;
      }
    }
    i++;
  }
}

static void reset_signals(int keep_pipe_ignored) {
  u64 act[4];
  int sig;
  for (sig = 1; sig <= 64; sig++) {
    if (sig == 9 || sig == 19) continue;
    act[0] = (sig == SIGPIPE && keep_pipe_ignored) ? 1 : 0; act[1] = 0; act[2] = 0; act[3] = 0;
    SYS4(NR_rt_sigaction, sig, act, 0, 8);
  }
}

static int launcher_main(void *unused) {
  /* argv and envp: the strings after the request's header */
  char *s = rq->strings;
  char *argv[64];
  char *envp[1];
  char *path = s;
  u64 i;
  u64 none = 0;
  s += slen(s) + 1;
  for (i = 0; i < rq->argc && i < 63; i++) { argv[i] = s; s += slen(s) + 1; }
  argv[i] = 0;
  envp[0] = 0;
  SYS3(NR_dup3, msg_w, 3, 0); /* without O_CLOEXEC (msg_w > 3: fd 3 is taken) */
  reset_signals(0);
  SYS4(NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &none, 0, 8);
  begin(); put("cannot start the launcher ("); put(path); put("): "); put_errno(SYS3(NR_execve, path, argv, envp)); end();
  SYS1(NR_exit_group, 127);
  return 127;
}

static int reaper_main(void *unused) {
  int fds[2];
  u64 chld = 1UL << (SIGCHLD - 1);
  i64 sfd, rc, pid;
  char *lock;
  u64 i;
  SYS3(NR_dup3, 0, 3, O_CLOEXEC); /* the first fork's report pipe closed, fd 3 kept taken */
  /* What the first fork used and this process never will: its stack, the maps it read. */
  SYS3(NR_madvise, arena + A_STACK1, STACK_BYTES, MADV_DONTNEED);
  SYS3(NR_madvise, arena + A_MAPS, MAPS_BYTES + MAX_RANGES * 24UL, MADV_DONTNEED);
  SYS5(NR_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  SYS5(NR_prctl, PR_SET_NAME, "ucr-reaper", 0, 0, 0);
  /* The lock file: held (shared) while this reaper lives, so the agent can tell. */
  lock = rq->strings;
  for (i = 0; i < 1 + rq->argc + rq->titlec; i++) lock += slen(lock) + 1;
  rc = SYS4(NR_openat, AT_FDCWD, lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (rc >= 0) rc = SYS2(NR_flock, rc, LOCK_SH);
  if (rc < 0) { begin(); put("cannot hold "); put(lock); put(": "); put_errno(rc); put(" (the agent sees this reaper only while its launcher lives)"); end(); }
  SYS4(NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &chld, 0, 8); /* only SIGCHLD blocked: SIGTERM ends it */
  sfd = SYS4(NR_signalfd4, -1, &chld, 8, O_CLOEXEC | O_NONBLOCK);
  if (sfd < 0) { begin(); put("cannot make a signalfd: "); put_errno(sfd); end(); SYS1(NR_exit_group, 1); }
  rc = SYS2(NR_pipe2, fds, O_CLOEXEC);
  if (rc < 0) { begin(); put("cannot make the launcher's pipe: "); put_errno(rc); end(); SYS1(NR_exit_group, 1); }
  msg_fd = fds[0];
  msg_w = fds[1];
  pid = f_clone(launcher_main, arena + A_STACK3 + STACK_BYTES, SIGCHLD, 0);
  if (pid < 0) { begin(); put("cannot start the launcher: "); put_errno(*f_errno()); end(); SYS1(NR_exit_group, 1); }
  launcher_pid = (int)pid;
  SYS1(NR_close, msg_w);
  for (;;) {
    struct { int fd; short events; short revents; } pfd[2];
    i64 ts[2], wait = -1, now;
    int n = 0;
    pfd[n].fd = (int)sfd; pfd[n].events = 1; pfd[n].revents = 0; n++;
    if (msg_fd >= 0) { pfd[n].fd = msg_fd; pfd[n].events = 1; pfd[n].revents = 0; n++; }
    if (pending) {
      now = now_ms(1);
      wait = 5000;
      for (i = 0; i < table_len; i++)
        if ((table[i].flags & K_PENDING) && table[i].next_ms - now < wait) wait = table[i].next_ms - now;
      if (wait < 0) wait = 0;
      ts[0] = wait / 1000; ts[1] = wait % 1000 * 1000000;
    }
    rc = SYS5(NR_ppoll, pfd, n, wait < 0 ? 0 : ts, 0, 8);
    if (rc < 0 && rc != -EINTR) { begin(); put("ppoll failed: "); put_errno(rc); end(); }
    if (pfd[0].revents) { u64 drain[16]; while (SYS3(NR_read, sfd, drain, sizeof(drain)) > 0) {} }
    reap_all();
    if (msg_fd >= 0 && n > 1 && pfd[1].revents) {
      if (!read_records()) { SYS1(NR_close, msg_fd); msg_fd = -1; }
    }
    /* Gone once both its records ended (EOF) and it is reaped: its descriptors close before
       the kernel hands its children over, so EOF alone is early. */
    if (!gone && msg_fd < 0 && launcher_pid < 0) settle();
    if (pending) {
      now = now_ms(1);
      i = 0;
      while (i < table_len) {
        struct known *k = &table[i];
        if ((k->flags & K_PENDING) && k->next_ms <= now && attempt(k)) { pending--; forget(k); continue; }
        i++;
      }
    }
    if (gone && table_len == 0 && !pending) SYS1(NR_exit_group, 0);
  }
  return 0;
}

static int keep_line(u64 start, u64 end, u64 *keep, int nkeep) {
  int i;
  for (i = 0; i < nkeep; i++) if (keep[i] >= start && keep[i] < end) return 1;
  return 0;
}
static u64 hex(const char **p) {
  u64 v = 0; const char *s = *p;
  for (;; s++) {
    char c = *s;
    if (c >= '0' && c <= '9') v = v * 16 + (u64)(c - '0');
    else if (c >= 'a' && c <= 'f') v = v * 16 + (u64)(c - 'a' + 10);
    else break;
  }
  *p = s;
  return v;
}
/* Unmaps every mapping but this code's, the arena's, libc's, the TLS', the vDSO's; of the
   stack that holds the command line, keeps only those pages. 0, or -errno. */
static i64 shed(void) {
  char *buf = arena + A_MAPS;
  u64 *ranges = (u64 *)(arena + A_RANGES), nr = 0, len = 0, i, libc_file = 0;
  u64 keep[5];
  i64 fd, n;
  keep[0] = (u64)&shed;            /* this code and its statics */
  keep[1] = (u64)arena;
  keep[2] = rq->tls;
  keep[3] = (u64)&table_len;       /* this code's data, */
  keep[4] = (u64)"ucr-reaper";     /* and its constants */
  fd = SYS4(NR_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return fd;
  for (;;) {
    char *line;
    n = SYS3(NR_read, fd, buf + len, MAPS_BYTES - 1 - len);
    if (n < 0) { SYS1(NR_close, fd); return n; }
    len += (u64)n;
    buf[len] = 0;
    line = buf;
    while (*line) {
      u64 start, end, file = 0, anon = 1;
      const char *p = line, *name;
      char *eol = line;
      while (*eol && *eol != '\\n') eol++;
      if (!*eol && n > 0) break; /* a partial line: read on */
      start = hex(&p); p++; end = hex(&p);
      /* "perms offset dev inode path": the file's identity is its dev and inode (FNV-1a) */
      p++; while (*p && *p != ' ') p++; p++; while (*p && *p != ' ') p++; p++;
      file = 14695981039346656037UL;
      while (*p && *p != ' ') file = (file ^ (u64)(unsigned char)*p++) * 1099511628211UL;
      p++;
      while (*p && *p != ' ' && *p != '\\n') { if (*p != '0') anon = 0; file = (file ^ (u64)(unsigned char)*p++) * 1099511628211UL; }
      if (anon) file = 0; /* inode 0: not a file */
      name = p; while (*name == ' ') name++;
      /* libc: the file of the mapping with syscall() in it; all of its mappings stay */
      if ((u64)f_syscall >= start && (u64)f_syscall < end) libc_file = file;
      if (rq->arg_start >= start && rq->arg_start < end) {
        /* the stack with the command line: only the command line's pages stay */
        u64 lo = rq->arg_start & ~(PAGE - 1), hi = (rq->env_end + PAGE - 1) & ~(PAGE - 1);
        if (lo > start) SYS3(NR_madvise, start, lo - start, MADV_DONTNEED);
        if (hi < end) SYS3(NR_madvise, hi, end - hi, MADV_DONTNEED);
      } else if (!(name[0] == '[' && name[1] == 'v') /* [vdso], [vvar], [vsyscall] */
                 && !keep_line(start, end, keep, 5) && nr < MAX_RANGES) {
        ranges[nr * 3] = start; ranges[nr * 3 + 1] = end; ranges[nr * 3 + 2] = file; nr++;
      }
      line = *eol ? eol + 1 : eol;
    }
    i = (u64)(line - buf);
    copy(buf, line, len - i);
    len -= i;
    if (n == 0) break;
  }
  SYS1(NR_close, fd);
  for (i = 0; i < nr; i++)
    if (!libc_file || ranges[i * 3 + 2] != libc_file) SYS2(NR_munmap, ranges[i * 3], ranges[i * 3 + 1] - ranges[i * 3]);
  return 0;
}

/* The reaper's title where ps reads it: the caller's argv area, NUL-separated like an argv
   when it fits there, else one line over the environment's area too (as setproctitle does),
   cut if even that is short: never the caller's own command line. */
static void set_title(void) {
  char *s = rq->strings, *title = (char *)rq->arg_start;
  u64 i, room = rq->env_end - rq->arg_start, argv_room = rq->arg_end - rq->arg_start, at = 0, need = 0;
  char *part;
  int as_argv;
  if (!rq->arg_start || room < 2) return;
  s += slen(s) + 1;
  for (i = 0; i < rq->argc; i++) s += slen(s) + 1;
  part = s;
  for (i = 0; i < rq->titlec; i++) { need += slen(part) + 1; part += slen(part) + 1; }
  as_argv = need <= argv_room;
  for (i = 0; i < rq->titlec && at < room - 1; i++) {
    u64 n = slen(s);
    if (n > room - 1 - at) n = room - 1 - at;
    copy(title + at, s, n);
    at += n;
    if (at < room - 1) title[at++] = as_argv || i + 1 == rq->titlec ? 0 : ' ';
    s += slen(s) + 1;
  }
  zero(title + at, (as_argv ? argv_room : room) - at);
}

static int first_main(void *unused) {
  i64 rc, nul, log, rep;
  /* Every signal blocked (by the caller, around the fork) and back to its default action. */
  reset_signals(1);
  SYS0(NR_setsid);
  /* fds: 0 and 1 /dev/null, 2 the log, 3 the report to the caller; nothing else of the caller's */
  rep = SYS3(NR_fcntl, report_fd, 1030 /* F_DUPFD_CLOEXEC */, 4);
  log = SYS3(NR_fcntl, rq->log_fd, 1030, 4);
  nul = SYS4(NR_openat, AT_FDCWD, "/dev/null", O_RDWR | O_CLOEXEC, 0);
  if (nul >= 0) nul = SYS3(NR_fcntl, nul, 1030, 4);
  if (rep < 0 || log < 0 || nul < 0) SYS1(NR_exit_group, 2);
  SYS3(NR_dup3, nul, 0, 0);
  SYS3(NR_dup3, nul, 1, 0);
  SYS3(NR_dup3, log, 2, 0);
  SYS3(NR_dup3, rep, 3, O_CLOEXEC);
  if (SYS3(NR_close_range, 4, ~0U, 0) < 0) {
    /* before Linux 5.9: one by one, as far as a descriptor can be */
    u64 lim[2], fd;
    lim[1] = 65536;
    if (SYS4(NR_prlimit64, 0, 7 /* RLIMIT_NOFILE */, 0, lim) < 0 || lim[1] > 1048576) lim[1] = 1048576;
    for (fd = 4; fd < lim[1]; fd++) SYS1(NR_close, fd);
  }
  rc = shed();
  if (rc == 0) {
    set_title();
    rc = f_clone(reaper_main, arena + A_STACK2 + STACK_BYTES, SIGCHLD, 0);
    rc = rc < 0 ? -(i64)*f_errno() : 0;
  }
  SYS3(NR_write, 3, &rc, 8);
  SYS1(NR_exit_group, rc == 0 ? 0 : 1);
  return 0;
}

/* In the caller: copies the request into a new arena and forks the first process, which
   forks the reaper and exits. Returns its pid, or -errno. */
int ucr_reaper_start(const char *req, u64 len, int report) {
  u64 all = ~0UL, old = 0;
  i64 pid, p;
  if (len > REQ_BYTES) return -7; /* E2BIG */
  p = MAP_NEW(ARENA_BYTES);
  if (p < 0) return (int)p;
  arena = (char *)p;
  copy(arena + A_REQ, req, len);
  rq = (struct req *)(arena + A_REQ);
  rq->tls = (u64)f_errno();
  report_fd = report;
  table = 0; table_cap = 0; table_len = 0; msg_fd = -1; msg_w = -1; msg_len = 0; gone = 0; pending = 0; launcher_pid = 0;
  SYS4(NR_rt_sigprocmask, 0 /* SIG_BLOCK */, &all, &old, 8);
  pid = f_clone(first_main, arena + A_STACK1 + STACK_BYTES, SIGCHLD, 0);
  if (pid < 0) pid = -(i64)*f_errno();
  SYS4(NR_rt_sigprocmask, 2, &old, 0, 8);
  SYS2(NR_munmap, arena, ARENA_BYTES);
  arena = 0;
  return (int)pid;
}

/* Reaps the first process: its wait status, or -errno (ECHILD: reaped elsewhere). */
int ucr_reaper_wait(int pid) {
  int status = 0;
  i64 rc;
  do rc = SYS4(NR_wait4, pid, &status, WALL, 0); while (rc == -EINTR);
  return rc < 0 ? (int)rc : status;
}

void ucr_reaper_init(void **f) {
  f_syscall = f[0];
  f_clone = f[1];
  f_errno = f[2];
}
`;
}
