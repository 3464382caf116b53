// The C source of a container's process before its exec (compiled by src/ffi/child.ts with
// bun:ffi's TinyCC, no headers, libc's functions handed in as pointers). It is forked from the
// launcher into the container's new namespaces and then only obeys: the launcher, which decides
// everything, asks it for the calls that must be made from inside those namespaces (mount,
// pivot_root, setns...) one request at a time on a seqpacket socket, and last for the exec with
// the confinement to apply first. No allocation, no lock, no JavaScript: only system calls, as
// a child forked from a threaded process must. (Over 400 lines: one C translation unit, the
// request loop, the fork and the exec's last steps share its buffers and message helpers.)
/** The requests it takes (the enum in the source). */
export const Op = {
  MOUNT: 1,
  UNSHARE: 3,
  SETNS: 4,
  SETHOSTNAME: 5,
  OPEN_TREE: 6,
  MOVE_MOUNT: 7,
  SETATTR: 8,
  CLOSE: 9,
  PIVOT: 10,
  CHDIR: 11,
  DATA: 13,
  EXEC: 14,
  EXIT: 15,
  MOUNTS: 16,
  OPENS: 17,
} as const;

/** How an entry of a MOUNTS request is run (its opts, beside which of source, fstype and data it has: 1, 2, 4). */
export const MountOpt = {
  /** ENOENT is no failure: the entry is skipped. */
  OK_MISSING: 0x100,
  /** ...and so is the next one. */
  SKIP_NEXT_IF_MISSING: 0x200,
  /** Run only if the entry before failed with ENOTDIR (its other kind); else skipped. */
  ALT: 0x400,
  /** ENOTDIR is no failure: the next entry (ALT) is tried instead. */
  HAS_ALT: 0x800,
} as const;

/** The descriptor of the host's /proc in the container's process (opened before its hello). */
export const HOST_PROC_FD = 5;

export const CHILD_SOURCE = `
typedef unsigned long u64;
typedef unsigned int u32;
typedef long i64;

static i64 (*f_syscall)(i64, ...);
static i64 (*f_read)(int, void *, u64);
static i64 (*f_write)(int, const void *, u64);
static int (*f_close)(int);
static int (*f_dup2)(int, int);
static int (*f_fcntl)(int, int, int);
static int (*f_open)(const char *, int, int);
static int (*f_mount)(const char *, const char *, const char *, u64, const void *);
static int (*f_umount2)(const char *, int);
static int (*f_unshare)(int);
static int (*f_setns)(int, int);
static int (*f_sethostname)(const char *, u64);
static int (*f_chdir)(const char *);
static int (*f_prctl)(int, u64, u64, u64, u64);
static int (*f_sigmask)(int, const void *, void *);
static int (*f_execve)(const char *, char *const *, char *const *);
static void (*f_exit)(int);
static int *(*f_errno)(void);
static int (*f_getpid)(void);
static int (*f_openat)(int, const char *, int, int);
static int (*f_fchdir)(int);
static int (*f_pthread_create)(u64 *, const void *, void *(*)(void *), void *);
static int (*f_clone)(int (*)(void *), void *, int, void *, ...);
static int (*f_pipe2)(int *, int);
static void *(*f_mmap)(void *, u64, int, int, int, i64);
static int (*f_munmap)(void *, u64);
static int (*f_pthread_join)(u64, void **);
/* Syscall numbers that differ by architecture, and the errno texts ("EPERM (Operation not permitted)"). */
static i64 nr_pivot_root, nr_capset, nr_seccomp, nr_rt_sigaction, nr_prlimit, nr_setgroups, nr_setresgid, nr_setresuid;
static const char *err_text;
static const u32 *err_off;
static int err_count;

#define NR_OPEN_TREE 428
#define NR_MOVE_MOUNT 429
#define NR_CLOSE_RANGE 436
#define NR_MOUNT_SETATTR 442
#define REPORT 3
#define SOCK 4

void ucr_child_init(void **f, i64 *nr, const char *texts, const u32 *offsets, int count) {
  f_syscall = f[0]; f_read = f[1]; f_write = f[2]; f_close = f[3]; f_dup2 = f[4]; f_fcntl = f[5];
  f_open = f[6]; f_mount = f[7]; f_umount2 = f[8]; f_unshare = f[9]; f_setns = f[10];
  f_sethostname = f[11]; f_chdir = f[12]; f_prctl = f[13]; f_sigmask = f[14]; f_execve = f[15];
  f_exit = f[16]; f_errno = f[17]; f_getpid = f[18]; f_openat = f[19]; f_fchdir = f[20];
  f_pthread_create = f[21]; f_clone = f[22]; f_pipe2 = f[23]; f_mmap = f[24];
  f_munmap = f[25]; f_pthread_join = f[26];
  nr_pivot_root = nr[0]; nr_capset = nr[1]; nr_seccomp = nr[2];
  nr_rt_sigaction = nr[3]; nr_prlimit = nr[4]; nr_setgroups = nr[5]; nr_setresgid = nr[6]; nr_setresuid = nr[7];
  err_text = texts; err_off = offsets; err_count = count;
}

static u64 len(const char *s) { u64 n = 0; while (s[n]) n++; return n; }

/* A message being built (one line, bounded). */
static char msg[4096];
static u64 at;
static void put(const char *s) { while (*s && at < sizeof(msg) - 2) msg[at++] = *s++; }
static void putnum(i64 v) {
  char b[24]; int n = 0;
  if (v < 0) { put("-"); v = -v; }
  do { b[n++] = '0' + v % 10; v /= 10; } while (v);
  while (n) { char c[2]; c[0] = b[--n]; c[1] = 0; put(c); }
}
static void puterr(int e) {
  if (e > 0 && e < err_count) put(err_text + err_off[e]);
  else { put("errno "); putnum(e); }
}
static void writeall(int fd, const char *p, u64 n) {
  while (n > 0) { i64 w = f_write(fd, p, n); if (w <= 0) return; p += w; n -= w; }
}
/* Ends the line and writes it to fd (and, prefixed "ucr: ", to stderr if fd is the report). */
static void say(int fd) {
  msg[at++] = '\\n';
  if (fd == REPORT) writeall(REPORT, msg, at);
  writeall(2, "ucr: ", 5);
  writeall(2, msg, at);
  at = 0;
}
/* A setup step failed: the launch fails with this (fd 3) and the process ends (status 1):
 * "container setup failed: <step><step_arg>: <call>(<what>[<num>]<what_end>) failed: <errno>". */
static void step_failed(const char *step, const char *step_arg, const char *call, const char *what, i64 num,
                        const char *what_end, int e) {
  at = 0; put("container setup failed: "); put(step); put(step_arg); put(": "); put(call); put("("); put(what);
  if (num >= 0) putnum(num);
  put(what_end); put(") failed: "); puterr(e); say(REPORT); f_exit(1);
}
static void setup_failed(const char *step, const char *call, const char *what, int e) { step_failed(step, "", call, what, -1, "", e); }
/* The workload's own failure after the launch counted as done (fd 3 closed): stderr, then this status. */
static void workload_failed(int status) { f_close(REPORT); say(2); f_exit(status); }

/* ---- the request loop ---- */
enum { OP_MOUNT = 1, OP_UNSHARE = 3, OP_SETNS, OP_SETHOSTNAME, OP_OPEN_TREE, OP_MOVE_MOUNT, OP_SETATTR, OP_CLOSE,
       OP_PIVOT, OP_CHDIR, OP_DATA = 13, OP_EXEC, OP_EXIT, OP_MOUNTS, OP_OPENS };

static u64 req[8192]; /* 64 KiB, 8-aligned */
/* The exec request, sent in parts (OP_DATA): the command, environment and filter may be large. */
#define BIG_BYTES (4 << 20)
static u64 *big; /* mapped by ucr_child_start */
/* A part of the exec request that did not fit: its exec is refused (parts get no answer).*/
static int data_failed;

/* NUL-terminated strings one after another from p; an empty one with flag bit unset means NULL. */
static const char *next_str(const char **p) { const char *s = *p; *p = s + len(s) + 1; return s; }

static i64 fail_errno(void) { return -(i64)*f_errno(); }

static u64 rd64(const char *p) { u64 v = 0; int i; for (i = 7; i >= 0; i--) v = (v << 8) | (unsigned char)p[i]; return v; }
static u32 rd32(const char *p) { u32 v = 0; int i; for (i = 3; i >= 0; i--) v = (v << 8) | (unsigned char)p[i]; return v; }

/* a mount entries, each u64 flags, u32 opts, then source, target, fstype, data: run in order
 * by the rules of MountOpt; 0, or -((index + 1) << 16 | errno) for the one that failed. */
static i64 mounts(u32 a, const char *p, const char *end) {
  u32 k;
  int prev = 0, skip_next = 0;
  for (k = 0; k < a; k++) {
    if (p + 12 > end) return -((i64)(k + 1) << 16 | 22);
    u64 flags = rd64(p);
    u32 opts = rd32(p + 8);
    p += 12;
    const char *src = next_str(&p), *target = next_str(&p), *type = next_str(&p), *data = next_str(&p);
    if (p > end + 1) return -((i64)(k + 1) << 16 | 22);
    if (skip_next || ((opts & 0x400) && prev != 20)) { skip_next = 0; prev = 0; continue; }
    int r = f_mount(opts & 1 ? src : 0, target, opts & 2 ? type : 0, flags, opts & 4 ? data : 0) == 0 ? 0 : *f_errno();
    prev = r;
    if (r == 0 || (r == 20 && (opts & 0x800))) continue;
    if (r == 2 && (opts & 0x100)) { if (opts & 0x200) skip_next = 1; prev = 0; continue; }
    return -((i64)(k + 1) << 16 | r);
  }
  return 0;
}

static void do_exec(const char *p, i64 n);

static void serve(void) {
  for (;;) {
    i64 n = f_read(SOCK, req, sizeof(req) - 1);
    if (n <= 0) f_exit(1); /* the launcher gave up on us, or is gone */
    ((char *)req)[n] = 0;
    u32 op = ((u32 *)req)[0];
    u32 a = ((u32 *)req)[1];
    u64 b = req[1];
    const char *p = (const char *)(req + 2);
    i64 rc = 0;
    if (op == OP_MOUNT) {
      /* a: which of source, fstype, data are present (bits 0, 1, 2); b: flags */
      const char *src = next_str(&p), *target = next_str(&p), *type = next_str(&p), *data = next_str(&p);
      rc = f_mount(a & 1 ? src : 0, target, a & 2 ? type : 0, b, a & 4 ? data : 0) == 0 ? 0 : fail_errno();
    } else if (op == OP_UNSHARE) {
      rc = f_unshare((int)a) == 0 ? 0 : fail_errno();
    } else if (op == OP_SETNS) {
      int fd = f_open(p, 0x80000 /* O_RDONLY|O_CLOEXEC */, 0);
      if (fd < 0) rc = fail_errno();
      else { rc = f_setns(fd, (int)a) == 0 ? 0 : fail_errno(); f_close(fd); }
    } else if (op == OP_SETHOSTNAME) {
      rc = f_sethostname(p, len(p)) == 0 ? 0 : fail_errno();
    } else if (op == OP_OPEN_TREE) {
      rc = f_syscall(NR_OPEN_TREE, -100, p, 1 | 0x80000 | 0x8000); /* CLONE, CLOEXEC, AT_RECURSIVE */
      if (rc < 0) rc = fail_errno();
    } else if (op == OP_MOVE_MOUNT) {
      /* a: the tree's descriptor (ours); p: where it goes */
      rc = f_syscall(NR_MOVE_MOUNT, (i64)a, "", -100, p, 0x4 | 0x10 /* F_EMPTY_PATH, T_SYMLINKS */) == 0 ? 0 : fail_errno();
    } else if (op == OP_SETATTR) {
      u64 attr[4]; attr[0] = b; attr[1] = 0; attr[2] = 0; attr[3] = 0;
      rc = f_syscall(NR_MOUNT_SETATTR, -100, p, 0x8000 /* AT_RECURSIVE */, attr, sizeof(attr)) == 0 ? 0 : fail_errno();
    } else if (op == OP_CLOSE) {
      rc = f_close((int)a) == 0 ? 0 : fail_errno();
    } else if (op == OP_PIVOT) {
      /* into p: it becomes "/", the old root is detached */
      if (f_chdir(p) != 0) rc = fail_errno();
      else if (f_syscall(nr_pivot_root, ".", ".") != 0) rc = -1000 - *f_errno();
      else if (f_umount2(".", 2 /* MNT_DETACH */) != 0) rc = -2000 - *f_errno();
      else if (f_chdir("/") != 0) rc = -3000 - *f_errno();
    } else if (op == OP_CHDIR) {
      /* a: the descriptor p is relative to (the host's /proc, held: after pivot_root the
       * container may have no /proc of its own to reach it by), or -1 for none */
      if ((int)a < 0) rc = f_chdir(p) == 0 ? 0 : fail_errno();
      else {
        int fd = f_openat((int)a, p, 0x200000 | 0x10000 | 0x80000 /* O_PATH, O_DIRECTORY, O_CLOEXEC */, 0);
        if (fd < 0) rc = fail_errno();
        else { rc = f_fchdir(fd) == 0 ? 0 : fail_errno(); f_close(fd); }
      }
    } else if (op == OP_MOUNTS) {
      rc = mounts(a, p, (const char *)req + n);
    } else if (op == OP_OPENS) {
      /* a paths, each opened with flags b: the reply is the count, then each descriptor or -errno (i32) */
      int out[258];
      u32 k;
      out[0] = out[1] = 0;
      for (k = 0; k < a && k < 256; k++) {
        const char *path = next_str(&p);
        int fd = f_open(path, (int)b | 0x80000, 0);
        out[2 + k] = fd < 0 ? -*f_errno() : fd;
      }
      out[0] = (int)k;
      f_write(SOCK, out, 8 + 4 * k);
      continue;
    } else if (op == OP_DATA) {
      /* a: where in the exec request these bytes go */
      i64 k, m = n - 16;
      if ((u64)a + (u64)m > BIG_BYTES - 1) data_failed = 1; /* E2BIG: the exec is refused */
      else for (k = 0; k < m; k++) ((char *)big)[a + k] = p[k];
      /* No answer: the launcher sends the parts and the exec at once and closes its end, and
       * an answer left unread there would make that close reset the connection (ECONNRESET)
       * before the exec request is read. */
      continue;
    } else if (op == OP_EXEC) {
      /* a: the request's length; returns only if it is malformed */
      if (a < BIG_BYTES && !data_failed) { ((char *)big)[a] = 0; do_exec((const char *)big, a); }
      /* Only a malformed request comes back: the launch fails, saying so. */
      at = 0; put("container setup failed: the launcher's exec request was malformed"); say(REPORT); f_exit(1);
    } else if (op == OP_EXIT) {
      /* b: 1 = the launch failed (the message to fd 3 too, status 1); else the workload's failure, status a */
      at = 0; put(p);
      if (b == 1) { say(REPORT); f_exit(1); }
      workload_failed((int)a);
    } else {
      rc = -22; /* EINVAL */
    }
    f_write(SOCK, &rc, sizeof(rc));
  }
}

/* ---- the fork ----
 * A native thread of the launcher clones the container's process sharing its memory and
 * suspended until that process execs or exits (CLONE_VM | CLONE_VFORK, as posix_spawn does),
 * so no page of the launcher is copied or write-protected. The process runs on a stack of its
 * own and touches no memory the launcher uses: its buffers here, and errno in the suspended
 * thread's TLS. The launcher's JavaScript thread goes on, and asks it for calls. */
struct fork_req { int fds[5]; int pad; u64 flags; int tid; int pad2; };
static struct fork_req freq;
static int ctl_r, ctl_w;
static u64 forker_thread;
static volatile int hello_sent;
#define STACK_BYTES (256 << 10)
static u64 *child_stack; /* mapped by ucr_child_start */

static int child_main(void *arg) {
  /* The five descriptors to 0..4 (through copies above them, as they may be among 0..4), then
   * every other one the launcher had is closed; the launcher hears our pid once that is done. */
  int high[5], i;
  for (i = 0; i < 5; i++) high[i] = f_fcntl(freq.fds[i], 1030 /* F_DUPFD_CLOEXEC */, 64);
  for (i = 0; i < 5; i++) if (high[i] < 0 || f_dup2(high[i], i) != i) f_exit(1);
  if (f_syscall(NR_CLOSE_RANGE, 5, ~0U, 0) != 0) for (i = 5; i < 65536; i++) f_close(i);
  /* The host's /proc at fd 5 (HOST_PROC): the launcher's descriptors are reached through it, also
   * after pivot_root, when the container may have no /proc of its own. */
  if (f_open("/proc", 0x200000 | 0x10000 | 0x80000 /* O_PATH, O_DIRECTORY, O_CLOEXEC */, 0) != 5) f_exit(1);
  i64 hello = freq.tid;
  data_failed = 0;
  hello_sent = 1;
  f_write(SOCK, &hello, sizeof(hello));
  serve();
  return 0;
}

static void *forker(void *arg) {
  u64 all[16];
  int i;
  for (i = 0; i < 16; i++) all[i] = ~0UL;
  f_sigmask(0 /* SIG_BLOCK */, all, 0); /* the child starts with every signal blocked until its exec */
  for (;;) {
    char c;
    if (f_read(ctl_r, &c, 1) != 1) return 0;
    int sock = freq.fds[4];
    freq.tid = 0;
    hello_sent = 0;
    int rc = f_clone(child_main, (char *)child_stack + STACK_BYTES,
                     (int)(freq.flags | 0x100 | 0x4000 | 0x100000 | 17), /* VM, VFORK, PARENT_SETTID, SIGCHLD */
                     0, &freq.tid);
    /* Back when it has exec'd or ended. A failed clone, or a child that ended before its hello, is
     * said where the launcher waits for that hello (its end is still open then, and only then). */
    if (rc < 0 || !hello_sent) {
      i64 e = rc < 0 ? -(i64)*f_errno() : -10 /* ECHILD */;
      f_write(sock, &e, sizeof(e));
    }
  }
}

/* Starts the forking thread; 0, or -errno. */
int ucr_child_start(void) {
  int p[2];
  /* The exec request's buffer and the process's stack are mapped, not static: TinyCC zeroes a
   * static array as it compiles, touching every page (4 MiB: ~15 ms per launcher start, and
   * kept resident); a mapping takes pages only as a request or the stack reaches them. */
  big = f_mmap(0, BIG_BYTES, 3 /* PROT_READ|PROT_WRITE */, 0x4022 /* MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE */, -1, 0);
  if (big == (void *)-1) return -*f_errno();
  child_stack = f_mmap(0, STACK_BYTES, 3, 0x24022 /* ...|MAP_STACK */, -1, 0);
  if (child_stack == (void *)-1) return -*f_errno();
  if (f_pipe2(p, 0x80000 /* O_CLOEXEC */) != 0) return -*f_errno();
  ctl_r = p[0]; ctl_w = p[1];
  int rc = f_pthread_create(&forker_thread, 0, forker, 0);
  return rc == 0 ? 0 : -rc;
}

/* Ends the forking thread (EOF on its pipe: it is between forks, as no launch may be in
 * flight when this is called) and waits for it, then unmaps the buffers; after this nothing
 * runs this code, and it can be freed. 0, or -errno of the join. */
int ucr_child_stop(void) {
  f_close(ctl_w);
  int rc = f_pthread_join(forker_thread, 0);
  f_close(ctl_r);
  f_munmap(big, BIG_BYTES);
  f_munmap(child_stack, STACK_BYTES);
  return rc == 0 ? 0 : -rc;
}

/* Asks the forking thread for a container's process; its pid (or -errno) comes on fds[4]'s peer. */
int ucr_child_fork(const int *fds, u64 flags) {
  int i;
  for (i = 0; i < 5; i++) freq.fds[i] = fds[i];
  freq.flags = flags;
  char c = 1;
  return f_write(ctl_w, &c, 1) == 1 ? 0 : -*f_errno();
}

/* ---- the last steps, then exec ---- */
struct exec_req {
  u32 flags;       /* 1 user, 2 keepcaps, 4 caps, 8 no_new_privs, 16 seccomp, 32 move the process (not the thread) */
  u32 uid, gid, ngroups;
  u32 last_cap, nrlimits, ncgroups, seccomp_flags;
  u64 bounding, effective, permitted, inheritable, ambient;
  u32 prog_bytes, argc, envc, pad;
  /* then: groups (u32 x ngroups, padded to 8), rlimits (u64 resource, soft, hard), cgroup fds (u32, padded),
   * the program (padded to 8), then strings: executable, PATH, the working dir (for messages), rlimit names, argv, env */
};

#define MAX_STRINGS 65536
static char *argv_[MAX_STRINGS], *envp_[MAX_STRINGS];
static char path_buf[4096];

/* execve of name as execvp would: with a slash as it is, else each PATH entry; status 127/126 if none runs. */
static void exec_path(const char *name, const char *path, char **argv, char **envp) {
  u64 i, j, n = len(name);
  int slash = 0, seen_eacces = 0, last = 2;
  if (n + 2 >= sizeof(path_buf)) { at = 0; put("executable name too long"); workload_failed(127); }
  for (i = 0; i < n; i++) if (name[i] == '/') slash = 1;
  if (slash) {
    f_execve(name, argv, envp);
    last = *f_errno();
    at = 0;
    if (last == 2) { put("executable '"); put(name); put("' not found"); workload_failed(127); }
    put("cannot execute "); put(name); put(": execve("); put(name); put(") failed: "); puterr(last);
    workload_failed(126);
  }
  const char *d = path;
  for (;;) {
    const char *e = d;
    while (*e && *e != ':') e++;
    j = 0;
    if (e == d) path_buf[j++] = '.';
    for (i = 0; d + i < e && j < sizeof(path_buf) - n - 2; i++) path_buf[j++] = d[i];
    path_buf[j++] = '/';
    for (i = 0; i < n && j < sizeof(path_buf) - 1; i++) path_buf[j++] = name[i];
    path_buf[j] = 0;
    f_execve(path_buf, argv, envp);
    int err = *f_errno();
    if (err == 13) seen_eacces = 1;
    else if (err != 2 && err != 20 && err != 40 && err != 36) { last = err; break; }
    if (!*e) break;
    d = e + 1;
  }
  at = 0;
  if (last != 2 && !seen_eacces) {
    put("cannot execute "); put(name); put(": execve("); put(path_buf); put(") failed: "); puterr(last);
    workload_failed(126);
  }
  put("executable '"); put(name); put("' not found in PATH ("); put(path); put(")");
  workload_failed(127);
}

static void do_exec(const char *p, i64 n) {
  const struct exec_req *r = (const struct exec_req *)p;
  const char *end = p + n;
  const char *q = p + sizeof(*r);
  const u32 *groups = (const u32 *)q;
  q += ((r->ngroups * 4 + 7) / 8) * 8;
  const u64 *rl = (const u64 *)q;
  q += r->nrlimits * 24;
  const u32 *cg = (const u32 *)q;
  q += ((r->ncgroups * 4 + 7) / 8) * 8;
  const char *prog = q;
  q += ((r->prog_bytes + 7) / 8) * 8;
  if (q > end || r->argc >= MAX_STRINGS || r->envc >= MAX_STRINGS) return;
  const char *exe = next_str(&q), *path = next_str(&q);
  const char *rlname[64];
  u32 i;
  if (r->nrlimits > 64) return;
  for (i = 0; i < r->nrlimits; i++) rlname[i] = next_str(&q);
  for (i = 0; i < r->argc; i++) argv_[i] = (char *)next_str(&q);
  argv_[r->argc] = 0;
  for (i = 0; i < r->envc; i++) envp_[i] = (char *)next_str(&q);
  envp_[r->envc] = 0;
  if (q > end + 1) return;

  /* The bounding set first (needs CAP_SETPCAP, which a non-root user no longer has). */
  for (i = 0; i <= r->last_cap; i++) {
    if (i < 64 && (r->bounding >> i) & 1) continue;
    if (f_prctl(24 /* PR_CAPBSET_DROP */, i, 0, 0, 0) != 0)
      step_failed("dropping capabilities from the bounding set", "", "prctl", "PR_CAPBSET_DROP ", i, "", *f_errno());
  }
  if (r->flags & 2 && f_prctl(8 /* PR_SET_KEEPCAPS */, 1, 0, 0, 0) != 0)
    setup_failed("keeping capabilities across the user switch", "prctl", "PR_SET_KEEPCAPS", *f_errno());
  for (i = 0; i < r->nrlimits; i++) {
    if (f_syscall(nr_prlimit, 0, rl[i * 3], &rl[i * 3 + 1], 0) != 0)
      step_failed("setting rlimit ", rlname[i], "setrlimit", rlname[i], -1, "", *f_errno());
  }
  if (r->flags & 1) {
    /* A failed switch is the workload's failure (as a shell's), not the launch's. */
    /* Raw system calls: glibc's wrappers would signal every thread the launcher had (its setxid
     * broadcast, under a lock another thread may have held at the fork). */
    if (f_syscall(nr_setgroups, (i64)r->ngroups, groups) != 0 || f_syscall(nr_setresgid, (i64)r->gid, (i64)r->gid, (i64)r->gid) != 0 ||
        f_syscall(nr_setresuid, (i64)r->uid, (i64)r->uid, (i64)r->uid) != 0) {
      int e = *f_errno(); at = 0; put("cannot switch to uid "); putnum(r->uid); put(": "); puterr(e); workload_failed(127);
    }
  }
  if (r->flags & 4) {
    u32 hdr[2], data[6];
    hdr[0] = 0x20080522; hdr[1] = 0;
    data[0] = (u32)r->effective; data[3] = (u32)(r->effective >> 32);
    data[1] = (u32)r->permitted; data[4] = (u32)(r->permitted >> 32);
    data[2] = (u32)r->inheritable; data[5] = (u32)(r->inheritable >> 32);
    if (f_syscall(nr_capset, hdr, data) != 0) setup_failed("setting the capability sets", "capset", "", *f_errno());
    if (f_prctl(47, 4 /* PR_CAP_AMBIENT_CLEAR_ALL */, 0, 0, 0) != 0)
      setup_failed("setting the ambient capabilities", "prctl", "PR_CAP_AMBIENT_CLEAR_ALL", *f_errno());
    for (i = 0; i < 64; i++) {
      if (!((r->ambient >> i) & 1)) continue;
      if (f_prctl(47, 2 /* PR_CAP_AMBIENT_RAISE */, i, 0, 0) != 0)
        setup_failed("setting the ambient capabilities", "prctl", "PR_CAP_AMBIENT_RAISE", *f_errno());
    }
  }
  /* The container's cgroups, at the last moment: everything above stays charged outside. */
  for (i = 0; i < r->ncgroups; i++) {
    char who[16]; int w = 0;
    if (r->flags & 32) { at = 0; putnum(f_getpid()); u64 k; for (k = 0; k < at; k++) who[w++] = msg[k]; at = 0; }
    else who[w++] = '0';
    if (f_write(cg[i], who, w) != w) {
      int e = *f_errno(); at = 0; put("cannot join the container's cgroups: write failed: "); puterr(e); workload_failed(125);
    }
    f_close(cg[i]);
  }
  /* Nothing but stdio reaches the workload (fd 3 and the socket close at exec: EOF is the launch's success). */
  if (f_syscall(NR_CLOSE_RANGE, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) != 0) {
    for (i = 3; i < 65536; i++) f_fcntl(i, 2 /* F_SETFD */, 1);
  }
  /* Every signal back to its default (the launcher's ignored ones would outlive the exec), none blocked. */
  u64 dfl[4]; dfl[0] = dfl[1] = dfl[2] = dfl[3] = 0;
  for (i = 1; i <= 64; i++) {
    if (i == 9 || i == 19) continue;
    if (f_syscall(nr_rt_sigaction, i, dfl, 0, 8) != 0)
      step_failed("resetting signal dispositions and the signal mask", "", "rt_sigaction", "signal ", i, " to SIG_DFL", *f_errno());
  }
  u64 none[16]; for (i = 0; i < 16; i++) none[i] = 0;
  f_sigmask(2, none, 0);
  if (r->flags & 8 && f_prctl(38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0) != 0)
    setup_failed("setting no_new_privs", "prctl", "PR_SET_NO_NEW_PRIVS", *f_errno());
  if (r->flags & 16) {
    u64 fprog[2]; fprog[0] = r->prog_bytes / 8; fprog[1] = (u64)prog;
    i64 rc = r->seccomp_flags == 0 ? f_prctl(22 /* PR_SET_SECCOMP */, 2, (u64)fprog, 0, 0)
                                   : f_syscall(nr_seccomp, 1, r->seccomp_flags, fprog);
    if (rc != 0) setup_failed("loading the seccomp filter", "seccomp", "SECCOMP_SET_MODE_FILTER", *f_errno());
  }
  exec_path(exe, path, argv_, envp_);
}
`;
