/*
 * The operating system's own message passing, between two processes (fork), for the Postbox
 * benchmark: a System V message queue, a POSIX message queue, or a pair of pipes.
 *
 *   osipc <sysv|posix|pipe> oneway <messages> <size>   the child receives, prints {"received","ms"}
 *   osipc <sysv|posix|pipe> rtt <rounds> <size>        the parent pings, the child echoes; prints
 *                                                      {"rounds","ms","p50us","p99us"}
 *
 * One send is one system call (msgsnd, mq_send, write) and one receive is one (msgrcv,
 * mq_receive, read of exactly one message), with each queue at the depth the OS gives an
 * unprivileged process. Every queue is removed on exit, on SIGTERM/SIGINT and on SIGALRM (the
 * program's own time limit); a POSIX queue is unlinked as soon as both ends hold it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum kind { SYSV, POSIX, PIPE };

static enum kind kind;
static int sysv_q = -1;
static pid_t parent_pid;
static mqd_t mq_ab = (mqd_t)-1, mq_ba = (mqd_t)-1;
static int pipe_ab[2] = {-1, -1}, pipe_ba[2] = {-1, -1};
static size_t size;

static void cleanup(void) {
  if (sysv_q >= 0 && getpid() == parent_pid) msgctl(sysv_q, IPC_RMID, NULL);
}

static void on_signal(int sig) {
  cleanup();
  _exit(sig == SIGALRM ? 3 : 2);
}

static void die(const char *what) {
  fprintf(stderr, "osipc: %s: %s\n", what, strerror(errno));
  cleanup();
  exit(1);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

struct sysv_msg {
  long mtype;
  char text[];
};

static char *buf;

/* direction 0: parent to child, 1: child to parent */
static void send_one(int direction) {
  switch (kind) {
  case SYSV: {
    struct sysv_msg *m = (struct sysv_msg *)buf;
    m->mtype = direction + 1;
    while (msgsnd(sysv_q, m, size, 0) < 0)
      if (errno != EINTR) die("msgsnd");
    break;
  }
  case POSIX:
    while (mq_send(direction ? mq_ba : mq_ab, buf, size, 0) < 0)
      if (errno != EINTR) die("mq_send");
    break;
  case PIPE: {
    int fd = direction ? pipe_ba[1] : pipe_ab[1];
    size_t off = 0;
    while (off < size) {
      ssize_t n = write(fd, buf + off, size - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        die("write");
      }
      off += (size_t)n;
    }
    break;
  }
  }
}

static void receive_one(int direction) {
  switch (kind) {
  case SYSV: {
    ssize_t n;
    while ((n = msgrcv(sysv_q, buf, size, direction + 1, 0)) < 0)
      if (errno != EINTR) die("msgrcv");
    if ((size_t)n != size) {
      errno = EPROTO;
      die("msgrcv size");
    }
    break;
  }
  case POSIX: {
    ssize_t n;
    while ((n = mq_receive(direction ? mq_ba : mq_ab, buf, size < 1 ? 1 : size, NULL)) < 0)
      if (errno != EINTR) die("mq_receive");
    break;
  }
  case PIPE: {
    int fd = direction ? pipe_ba[0] : pipe_ab[0];
    size_t off = 0;
    while (off < size) {
      ssize_t n = read(fd, buf + off, size - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        die("read");
      }
      if (n == 0) {
        errno = EPIPE;
        die("read: end of pipe");
      }
      off += (size_t)n;
    }
    break;
  }
  }
}

static mqd_t open_mq(const char *suffix) {
  char name[64];
  snprintf(name, sizeof name, "/postbox-bench-%d-%s", (int)getpid(), suffix);
  struct mq_attr attr = {0};
  long maxmsg = 10;
  FILE *f = fopen("/proc/sys/fs/mqueue/msg_max", "r");
  if (f != NULL) {
    if (fscanf(f, "%ld", &maxmsg) != 1) maxmsg = 10;
    fclose(f);
  }
  attr.mq_maxmsg = maxmsg;
  attr.mq_msgsize = size < 1 ? 1 : (long)size;
  mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
  if (q == (mqd_t)-1) die("mq_open");
  mq_unlink(name); /* both ends inherit the descriptor: nothing is left behind */
  return q;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: osipc <sysv|posix|pipe> <oneway|rtt> <count> <size>\n");
    return 64;
  }
  if (!strcmp(argv[1], "sysv")) kind = SYSV;
  else if (!strcmp(argv[1], "posix")) kind = POSIX;
  else if (!strcmp(argv[1], "pipe")) kind = PIPE;
  else {
    fprintf(stderr, "osipc: unknown kind %s\n", argv[1]);
    return 64;
  }
  int rtt = !strcmp(argv[2], "rtt");
  long count = atol(argv[3]);
  size = (size_t)atol(argv[4]);
  if (count < 1) return 64;
  parent_pid = getpid();

  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGALRM, on_signal);
  signal(SIGPIPE, on_signal);
  alarm(120);

  buf = calloc(1, sizeof(long) + size + 1);
  if (buf == NULL) die("calloc");
  memset(kind == SYSV ? buf + sizeof(long) : buf, 'a', size);

  switch (kind) {
  case SYSV:
    sysv_q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (sysv_q < 0) die("msgget");
    break;
  case POSIX:
    mq_ab = open_mq("ab");
    if (rtt) mq_ba = open_mq("ba");
    break;
  case PIPE:
    if (pipe(pipe_ab) < 0 || pipe(pipe_ba) < 0) die("pipe");
    break;
  }

  fflush(stdout);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent_pid) _exit(2);
    if (rtt) {
      for (long i = 0; i < count; i++) {
        receive_one(0);
        send_one(1);
      }
      _exit(0);
    }
    receive_one(0);
    double start = now_ms();
    for (long i = 1; i < count; i++) receive_one(0);
    double ms = now_ms() - start;
    printf("{\"received\":%ld,\"ms\":%.3f}\n", count, ms);
    fflush(stdout);
    _exit(0);
  }

  if (rtt) {
    double *lat = malloc(sizeof(double) * (size_t)count);
    if (lat == NULL) die("malloc");
    double start = now_ms();
    for (long i = 0; i < count; i++) {
      double t0 = now_ms();
      send_one(0);
      receive_one(1);
      lat[i] = (now_ms() - t0) * 1000.0;
    }
    double ms = now_ms() - start;
    qsort(lat, (size_t)count, sizeof(double), cmp_double);
    printf("{\"rounds\":%ld,\"ms\":%.3f,\"p50us\":%.3f,\"p99us\":%.3f}\n", count, ms, lat[count / 2],
           lat[(long)(count * 0.99) < count ? (long)(count * 0.99) : count - 1]);
    fflush(stdout);
  } else {
    for (long i = 0; i < count; i++) send_one(0);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  cleanup();
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
