//go:build ignore

// (The constraint above keeps the Go tool from treating this directory as cgo.)

/*
 * cecho: a minimal reference epoll echo server, the yardstick the reactor
 * model is measured against.
 *
 *   cc -O2 -o cecho bench/cecho.c
 *   ./cecho [host] [port]          (defaults 127.0.0.1 and 0: any free port)
 *
 * It prints "listening on HOST:PORT" once ready (and, when NOTIFY_SOCKET is
 * set, says READY=1 and X_TCPLAB_ADDR=HOST:PORT there, as tcplab serve
 * does: systemd's notification protocol) and serves until SIGINT or
 * SIGTERM. One thread, one level-triggered epoll instance, non-blocking
 * sockets with TCP_NODELAY (as Go sets it), one 64 KiB read buffer: a
 * readable socket gets one read and the bytes are written straight back.
 * Bytes the socket cannot take are kept for that connection, which then
 * waits for EPOLLOUT and is not read until they are gone. Nothing else: no
 * limits, no timeouts. It is what a careful C programmer writes for a
 * benchmark, so it is what "C speed" means here.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define BUF_SIZE (64 * 1024)

struct pending {      /* bytes a full socket has not taken yet */
	char *data;
	size_t len, off;
};

static struct pending *pend; /* by fd */
static int npend;
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what) {
	fprintf(stderr, "cecho: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void set_events(int ep, int fd, unsigned ev) {
	struct epoll_event e = {.events = ev, .data.fd = fd};
	epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
}

static void drop(int fd) {
	if (fd < npend) {
		free(pend[fd].data);
		memset(&pend[fd], 0, sizeof pend[fd]);
	}
	close(fd);
}

/* keep stores the bytes the socket did not take and waits for EPOLLOUT. */
static void keep(int ep, int fd, const char *p, size_t n) {
	if (fd >= npend) {
		int m = fd * 2 + 1;
		pend = realloc(pend, m * sizeof *pend);
		if (!pend) die("realloc");
		memset(pend + npend, 0, (m - npend) * sizeof *pend);
		npend = m;
	}
	pend[fd].data = malloc(n);
	if (!pend[fd].data) die("malloc");
	memcpy(pend[fd].data, p, n);
	pend[fd].len = n;
	pend[fd].off = 0;
	set_events(ep, fd, EPOLLOUT);
}

static void writable(int ep, int fd) {
	struct pending *q = &pend[fd];
	while (q->off < q->len) {
		ssize_t w = write(fd, q->data + q->off, q->len - q->off);
		if (w < 0) {
			if (errno == EAGAIN) return;
			drop(fd);
			return;
		}
		q->off += (size_t)w;
	}
	free(q->data);
	memset(q, 0, sizeof *q);
	set_events(ep, fd, EPOLLIN);
}

static void readable(int ep, int fd, char *buf) {
	ssize_t n = read(fd, buf, BUF_SIZE);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		drop(fd);
		return;
	}
	if (n < 0) return;
	ssize_t w = write(fd, buf, (size_t)n);
	if (w < 0) {
		if (errno != EAGAIN) {
			drop(fd);
			return;
		}
		w = 0;
	}
	if (w < n) keep(ep, fd, buf + w, (size_t)(n - w));
}

/* notify_ready sends READY=1 and the address to the socket NOTIFY_SOCKET
 * names, if any ("@name" is in the abstract namespace). */
static void notify_ready(const char *host, int port) {
	const char *path = getenv("NOTIFY_SOCKET");
	if (path == NULL || path[0] == '\0') return;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if (len >= sizeof sun.sun_path || (path[0] != '/' && path[0] != '@')) {
		fprintf(stderr, "cecho: NOTIFY_SOCKET %s: not a socket path\n", path);
		exit(1);
	}
	memcpy(sun.sun_path, path, len);
	if (path[0] == '@') sun.sun_path[0] = '\0';
	char msg[128];
	int n = snprintf(msg, sizeof msg, "READY=1\nX_TCPLAB_ADDR=%s:%d\n", host, port);
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) die("notify socket");
	socklen_t slen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (sendto(s, msg, (size_t)n, 0, (struct sockaddr *)&sun, slen) < 0) die("notify");
	close(s);
}

int main(int argc, char **argv) {
	const char *host = argc > 1 ? argv[1] : "127.0.0.1";
	int port = argc > 2 ? atoi(argv[2]) : 0;
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ls < 0) die("socket");
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		fprintf(stderr, "cecho: %s: not an IPv4 address\n", host);
		return 2;
	}
	if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
	if (listen(ls, 4096) < 0) die("listen");
	socklen_t alen = sizeof addr;
	getsockname(ls, (struct sockaddr *)&addr, &alen);
	printf("listening on %s:%d\n", host, ntohs(addr.sin_port));
	fflush(stdout);
	notify_ready(host, ntohs(addr.sin_port));

	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) die("epoll_create1");
	struct epoll_event e = {.events = EPOLLIN, .data.fd = ls};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e) < 0) die("epoll_ctl");
	static char buf[BUF_SIZE];
	struct epoll_event evs[MAX_EVENTS];
	while (!stop) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR) continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == ls) {
				int c;
				while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
				}
			} else if (fd < npend && pend[fd].data) {
				writable(ep, fd);
			} else {
				readable(ep, fd, buf);
			}
		}
	}
	return 0;
}
