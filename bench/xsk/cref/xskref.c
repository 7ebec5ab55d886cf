// xskref: the C/libxdp reference for dpkit's AF_XDP benchmarks. It runs rxdrop, txonly
// or l2fwd on queue 0 of an interface the way the kernel's xdpsock sample does, with
// libxdp's xsk API and its default redirect program, and speaks the line protocol of
// ../bench_test.go: "ready" once bound, then "done <packets> <nanoseconds> <cpu-ns>".
//
// Build: sh build.sh OUT  (gcc, libxdp-dev, libbpf-dev)
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <xdp/xsk.h>

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9 /* kernel 6.17+ */
#endif

static uint64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t cpu_ns(void) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static void die(const char *what, int err) {
	fprintf(stderr, "xskref: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

struct ctx {
	struct xsk_ring_prod fq, tx;
	struct xsk_ring_cons cq, rx;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	void *buf;
	unsigned frames, ring, batch;
};

static void kick_tx(struct ctx *c) {
	if (!xsk_ring_prod__needs_wakeup(&c->tx))
		return;
	if (sendto(xsk_socket__fd(c->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 &&
	    errno != EAGAIN && errno != EBUSY && errno != ENOBUFS && errno != ENETDOWN)
		die("sendto", errno);
}

static void macswap(void *p) {
	uint8_t *d = p, t[6];
	memcpy(t, d, 6);
	memcpy(d, d + 6, 6);
	memcpy(d + 6, t, 6);
}

int main(int argc, char **argv) {
	const char *ifname = NULL, *mode = "rxdrop";
	unsigned long long count = 1000000;
	struct ctx c = {.frames = 4096, .ring = 2048, .batch = 64};
	int txbudget = 0;
	static const struct option lo[] = {
		{"if", 1, 0, 'i'}, {"mode", 1, 0, 'm'}, {"count", 1, 0, 'n'},
		{"frames", 1, 0, 'f'}, {"ring", 1, 0, 'r'}, {"batch", 1, 0, 'b'},
		{"txbudget", 1, 0, 't'}, {0}};
	int o;
	while ((o = getopt_long_only(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'i': ifname = optarg; break;
		case 'm': mode = optarg; break;
		case 'n': count = strtoull(optarg, NULL, 10); break;
		case 'f': c.frames = atoi(optarg); break;
		case 'r': c.ring = atoi(optarg); break;
		case 'b': c.batch = atoi(optarg); break;
		case 't': txbudget = atoi(optarg); break;
		default: return 2;
		}
	}
	int ifindex = ifname ? if_nametoindex(ifname) : 0;
	if (!ifindex)
		die("interface", ENODEV);
	int rxdrop = !strcmp(mode, "rxdrop"), txonly = !strcmp(mode, "txonly"), l2fwd = !strcmp(mode, "l2fwd");
	if (!rxdrop && !txonly && !l2fwd)
		die("mode", EINVAL);

	size_t size = (size_t)c.frames * XSK_UMEM__DEFAULT_FRAME_SIZE;
	c.buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (c.buf == MAP_FAILED)
		die("mmap", errno);
	struct xsk_umem_config ucfg = {
		.fill_size = c.ring, .comp_size = c.ring,
		.frame_size = XSK_UMEM__DEFAULT_FRAME_SIZE, .frame_headroom = 0,
	};
	int err = xsk_umem__create(&c.umem, c.buf, size, &c.fq, &c.cq, &ucfg);
	if (err)
		die("xsk_umem__create", err);
	struct xsk_socket_config scfg = {
		.rx_size = c.ring, .tx_size = c.ring,
		.xdp_flags = XDP_FLAGS_DRV_MODE,
		.bind_flags = XDP_USE_NEED_WAKEUP | XDP_COPY,
	};
	err = xsk_socket__create(&c.xsk, ifname, 0, c.umem, &c.rx, &c.tx, &scfg);
	if (err)
		die("xsk_socket__create", err);
	// The copy-mode frames sent per kick, as dpkit's Config.TxBudget sets it; older
	// kernels lack the option (ENOPROTOOPT) and keep their 32.
	if (txbudget > 0 &&
	    setsockopt(xsk_socket__fd(c.xsk), SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &txbudget, sizeof txbudget) < 0 &&
	    errno != ENOPROTOOPT)
		die("XDP_MAX_TX_SKB_BUDGET", errno);

	uint32_t idx;
	if (!txonly) {
		// Half the frames for receiving, as xdpsock does.
		unsigned n = c.ring;
		if (xsk_ring_prod__reserve(&c.fq, n, &idx) != n)
			die("fill", ENOSPC);
		for (unsigned i = 0; i < n; i++)
			*xsk_ring_prod__fill_addr(&c.fq, idx++) = (uint64_t)i * XSK_UMEM__DEFAULT_FRAME_SIZE;
		xsk_ring_prod__submit(&c.fq, n);
	} else {
		uint8_t f[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45};
		for (unsigned i = 0; i < c.frames; i++)
			memcpy((uint8_t *)c.buf + (size_t)i * XSK_UMEM__DEFAULT_FRAME_SIZE, f, sizeof f);
	}
	printf("ready\n");
	fflush(stdout);

	unsigned long long done = 0;
	uint64_t start = txonly ? now_ns() : 0, cpu0 = txonly ? cpu_ns() : 0;
	unsigned outstanding = 0, next = 0;
	while (done < count) {
		if (txonly) {
			uint32_t ci;
			unsigned k = xsk_ring_cons__peek(&c.cq, c.ring, &ci);
			if (k) {
				xsk_ring_cons__release(&c.cq, k);
				outstanding -= k;
			}
			unsigned want = c.batch;
			if (xsk_ring_prod__reserve(&c.tx, want, &idx) != want) {
				kick_tx(&c);
				continue;
			}
			for (unsigned i = 0; i < want; i++) {
				struct xdp_desc *d = xsk_ring_prod__tx_desc(&c.tx, idx + i);
				d->addr = (uint64_t)next * XSK_UMEM__DEFAULT_FRAME_SIZE;
				d->len = 60;
				next = (next + 1) % c.frames;
			}
			xsk_ring_prod__submit(&c.tx, want);
			outstanding += want;
			done += want;
			kick_tx(&c);
			continue;
		}
		uint32_t ri;
		unsigned n = xsk_ring_cons__peek(&c.rx, c.batch, &ri);
		if (!n) {
			if (xsk_ring_prod__needs_wakeup(&c.fq))
				recvfrom(xsk_socket__fd(c.xsk), NULL, 0, MSG_DONTWAIT, NULL, NULL);
			if (l2fwd) {
				// Completed frames go back to the fill ring.
				uint32_t ci, fi;
				unsigned k = xsk_ring_cons__peek(&c.cq, c.batch, &ci);
				if (k && xsk_ring_prod__reserve(&c.fq, k, &fi) == k) {
					for (unsigned i = 0; i < k; i++)
						*xsk_ring_prod__fill_addr(&c.fq, fi++) = *xsk_ring_cons__comp_addr(&c.cq, ci++);
					xsk_ring_prod__submit(&c.fq, k);
					xsk_ring_cons__release(&c.cq, k);
				}
				kick_tx(&c);
			}
			continue;
		}
		if (!start) {
			start = now_ns();
			cpu0 = cpu_ns();
		}
		if (rxdrop) {
			uint32_t fi;
			while (xsk_ring_prod__reserve(&c.fq, n, &fi) != n)
				;
			for (unsigned i = 0; i < n; i++)
				*xsk_ring_prod__fill_addr(&c.fq, fi++) = xsk_ring_cons__rx_desc(&c.rx, ri++)->addr;
			xsk_ring_prod__submit(&c.fq, n);
			xsk_ring_cons__release(&c.rx, n);
			done += n;
			continue;
		}
		// l2fwd: completions back to fill, then rx to tx with MACs swapped.
		uint32_t ci, fi, ti;
		unsigned k = xsk_ring_cons__peek(&c.cq, c.ring, &ci);
		if (k) {
			while (xsk_ring_prod__reserve(&c.fq, k, &fi) != k)
				;
			for (unsigned i = 0; i < k; i++)
				*xsk_ring_prod__fill_addr(&c.fq, fi++) = *xsk_ring_cons__comp_addr(&c.cq, ci++);
			xsk_ring_prod__submit(&c.fq, k);
			xsk_ring_cons__release(&c.cq, k);
		}
		while (xsk_ring_prod__reserve(&c.tx, n, &ti) != n)
			kick_tx(&c);
		for (unsigned i = 0; i < n; i++) {
			const struct xdp_desc *r = xsk_ring_cons__rx_desc(&c.rx, ri++);
			struct xdp_desc *t = xsk_ring_prod__tx_desc(&c.tx, ti++);
			macswap(xsk_umem__get_data(c.buf, r->addr));
			t->addr = r->addr;
			t->len = r->len;
		}
		xsk_ring_prod__submit(&c.tx, n);
		xsk_ring_cons__release(&c.rx, n);
		done += n;
		kick_tx(&c);
	}
	uint64_t el = now_ns() - start, cpu = cpu_ns() - cpu0;
	printf("done %llu %llu %llu\n", done, (unsigned long long)el, (unsigned long long)cpu);
	fflush(stdout);
	xsk_socket__delete(c.xsk);
	xsk_umem__delete(c.umem);
	return 0;
}
