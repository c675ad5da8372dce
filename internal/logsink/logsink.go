// Package logsink is the log output of the long-running binaries: a
// Writer that hands log lines to one background goroutine, so that under
// load the lines of many requests or tasks leave in one write(2) instead
// of one each, and a slog.Handler wrapper that flushes right after every
// record at warn level or above.
//
// Nothing is dropped: a Writer that has more than MaxPending bytes
// waiting blocks its callers until the output catches up, as a direct
// write to a full pipe would. What a crash can lose is the info lines
// handed over in the last moments (typically microseconds) that the
// goroutine had not yet written; warnings and errors are written before
// the logging call returns. Close writes everything and makes later
// writes synchronous.
package logsink

import (
	"context"
	"io"
	"log/slog"
	"sync"
)

// MaxPending is how many bytes a Writer holds before Write waits for the
// output.
const MaxPending = 1 << 20

// Writer coalesces writes to an io.Writer through one goroutine. Each
// Write is written whole and in order (slog handlers write one record per
// Write). The zero value is not usable; call New.
type Writer struct {
	out io.Writer

	mu      sync.Mutex
	cond    *sync.Cond // broadcast when pending grows, drains, or closed changes
	pending []byte
	spare   []byte
	queued  int64 // bytes accepted by Write
	written int64 // bytes the goroutine has passed to out
	closed  bool  // Close called: the goroutine drains and exits
	exited  bool  // the goroutine has exited: Write writes directly
	err     error // first error from out
	done    chan struct{}
}

// New starts a Writer on out. Call Close to write what is pending and stop
// its goroutine.
func New(out io.Writer) *Writer {
	w := &Writer{out: out, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.loop()
	return w
}

// Write queues a copy of p and returns len(p). After Close it writes p to
// the output directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.exited {
		return w.out.Write(p)
	}
	for len(w.pending) >= MaxPending && !w.exited {
		w.cond.Wait()
	}
	if w.exited {
		return w.out.Write(p)
	}
	w.pending = append(w.pending, p...)
	w.queued += int64(len(p))
	w.cond.Broadcast()
	return len(p), nil
}

// Flush returns once everything written before it was called has been
// passed to the output, and reports the output's first error, if any.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.queued
	for w.written < target && !w.exited {
		w.cond.Wait()
	}
	return w.err
}

// Close writes what is pending, stops the goroutine and reports the
// output's first error. Writes after Close go to the output directly.
func (w *Writer) Close() error {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// loop writes whatever has accumulated, one write per turn.
func (w *Writer) loop() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.pending) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.pending) == 0 {
			w.exited = true
			w.cond.Broadcast()
			return
		}
		buf := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()
		_, err := w.out.Write(buf)
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = err
		}
		w.written += int64(len(buf))
		if cap(buf) <= 4*MaxPending {
			w.spare = buf[:0]
		} else {
			w.spare = nil
		}
		w.cond.Broadcast()
	}
}

// Handler returns h writing through w, flushing w after each record at
// level flushAt or above, so that warnings and errors are out before the
// logging call returns.
func Handler(h slog.Handler, w *Writer, flushAt slog.Level) slog.Handler {
	return &flushHandler{Handler: h, w: w, flushAt: flushAt}
}

type flushHandler struct {
	slog.Handler
	w       *Writer
	flushAt slog.Level
}

// Handle implements slog.Handler.
func (h *flushHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.flushAt {
		_ = h.w.Flush()
	}
	return err
}

// WithAttrs implements slog.Handler.
func (h *flushHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &flushHandler{Handler: h.Handler.WithAttrs(attrs), w: h.w, flushAt: h.flushAt}
}

// WithGroup implements slog.Handler.
func (h *flushHandler) WithGroup(name string) slog.Handler {
	return &flushHandler{Handler: h.Handler.WithGroup(name), w: h.w, flushAt: h.flushAt}
}
