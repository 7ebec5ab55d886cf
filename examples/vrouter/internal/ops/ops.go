// Package ops serves the vRouter's operations endpoint on a loopback address:
//
//	GET /metrics                        Prometheus counters
//	GET /debug/capture?interface=NAME   a pcap stream of what crosses NAME
//	     &duration=5s&snaplen=256&dir=rx|tx|both
//	GET /healthz                        200 when the dataplane runs
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/dpkit/dpkit/examples/vrouter/internal/metrics"
	"github.com/dpkit/dpkit/pmd"
)

// Capturer finds the capture point of an interface by name.
type Capturer func(name string) (*pmd.CapturePort, bool)

// Server is the operations endpoint.
type Server struct {
	Metrics *metrics.Registry
	Capture Capturer
	// MaxCapture bounds a capture's duration; 0 means one minute.
	MaxCapture time.Duration

	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc // ends the requests in progress (captures)
}

// Handler returns the endpoint's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.Metrics)
	mux.HandleFunc("GET /debug/capture", s.capture)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return mux
}

// Start listens on addr (which must be loopback) and serves in the background.
func (s *Server) Start(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("ops: %q is not a loopback address", addr)
	}
	s.ln, err = net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Requests' contexts derive from one Close cancels: Shutdown waits for the
	// handlers, and a capture's runs until its context ends or its duration does.
	base, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return base }}
	go s.srv.Serve(s.ln)
	return nil
}

// Addr returns the address it listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, ending the captures in progress.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

func (s *Server) capture(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cp, ok := s.Capture(q.Get("interface"))
	if !ok {
		http.Error(w, "no interface "+strconv.Quote(q.Get("interface")), http.StatusNotFound)
		return
	}
	maxD := s.MaxCapture
	if maxD == 0 {
		maxD = time.Minute
	}
	d := 5 * time.Second
	if v := q.Get("duration"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 || d > maxD {
			http.Error(w, fmt.Sprintf("duration must be in (0, %v]", maxD), http.StatusBadRequest)
			return
		}
	}
	opts := pmd.CaptureOptions{}
	if v := q.Get("snaplen"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 64 || n > 65535 {
			http.Error(w, "snaplen must be in 64..65535", http.StatusBadRequest)
			return
		}
		opts.Snaplen = n
	}
	switch q.Get("dir") {
	case "", "both":
	case "rx":
		opts.Rx = true
	case "tx":
		opts.Tx = true
	default:
		http.Error(w, "dir must be rx, tx or both", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	rc := http.NewResponseController(w)
	if err := cp.Start(flushWriter{w, rc}, opts); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, pmd.ErrCaptureActive) {
			status = http.StatusConflict
		}
		http.Error(w, err.Error(), status)
		return
	}
	// Stop waits for the capture's writer, which a client that stopped reading
	// would block for ever, holding the interface's capture: what is queued gets a
	// second to go out, none when the client is gone or the server closes.
	grace := time.Second
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		grace = 0
	}
	rc.SetWriteDeadline(time.Now().Add(grace))
	cp.Stop()
}

// flushWriter sends each write of the capture (made about every 100 ms while packets
// come) to the client at once, so that `curl ... | tshark -r -` follows it live.
type flushWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}
