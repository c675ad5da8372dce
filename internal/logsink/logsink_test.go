package logsink

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.MainLeakCheck(m)) }

// recorder is an output that records each Write, optionally slowly.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	delay  time.Duration
	block  chan struct{} // when set, Write waits for it to be closed
	err    error
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.block != nil {
		<-r.block
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	r.buf.Write(p)
	return len(p), r.err
}

func (r *recorder) snapshot() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.writes
}

// TestEveryLineOnceInOrder has 16 goroutines log 2,000 lines each into a
// slow output: after Close every line is there exactly once, whole, each
// goroutine's lines in their order, in fewer writes than lines.
func TestEveryLineOnceInOrder(t *testing.T) {
	t.Parallel()
	out := &recorder{delay: 200 * time.Microsecond}
	w := New(out)
	const writers, lines = 16, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "g%02d line %05d %s\n", g, i, strings.Repeat("x", i%50))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	text, writes := out.snapshot()
	got := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	next := make([]int, writers)
	for _, line := range got {
		var g, i int
		if _, err := fmt.Sscanf(line, "g%d line %d ", &g, &i); err != nil || g < 0 || g >= writers {
			t.Fatalf("torn line %q: %v", line, err)
		}
		if i != next[g] || line != fmt.Sprintf("g%02d line %05d %s", g, i, strings.Repeat("x", i%50)) {
			t.Fatalf("goroutine %d: line %q, want line %d", g, line, next[g])
		}
		next[g]++
	}
	if writes >= writers*lines {
		t.Errorf("%d writes for %d lines: nothing coalesced", writes, writers*lines)
	}
	t.Logf("%d lines in %d writes", writers*lines, writes)
}

// TestFlushAndWarnings: Flush returns only when earlier lines are out, and
// the handler flushes after a warning but leaves info lines to the
// goroutine.
func TestFlushAndWarnings(t *testing.T) {
	t.Parallel()
	out := &recorder{block: make(chan struct{})}
	w := New(out)
	defer w.Close()
	logger := slog.New(Handler(slog.NewTextHandler(w, nil), w, slog.LevelWarn)).With("tenant_id", "acme")

	logger.Info("queued") // returns although the output is blocked
	warned := make(chan struct{})
	go func() {
		logger.WithGroup("g").Warn("careful", "k", 1)
		close(warned)
	}()
	select {
	case <-warned:
		t.Fatal("Warn returned before its line was written")
	case <-time.After(50 * time.Millisecond):
	}
	close(out.block)
	select {
	case <-warned:
	case <-time.After(10 * time.Second):
		t.Fatal("Warn did not return after the output unblocked")
	}
	text, _ := out.snapshot()
	if !strings.Contains(text, "msg=queued tenant_id=acme") || !strings.Contains(text, "msg=careful tenant_id=acme g.k=1") {
		t.Fatalf("output %q", text)
	}
	fmt.Fprintln(w, "last")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if text, _ := out.snapshot(); !strings.HasSuffix(text, "last\n") {
		t.Fatalf("Flush returned before the line was written: %q", text)
	}
}

// TestBackpressure: with the output stuck, Write accepts MaxPending bytes
// and then waits instead of growing without bound or dropping lines.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	out := &recorder{block: make(chan struct{})}
	w := New(out)
	line := []byte(strings.Repeat("y", 1023) + "\n")
	fmt.Fprintln(w, "first") // taken by the goroutine, which then blocks in out.Write
	pendingBytes := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.pending)
	}
	testenv.WaitFor(t, 30*time.Second, "the goroutine to take the first line", func() bool { return pendingBytes() == 0 })
	wrote := make(chan int)
	go func() {
		n := 0
		for range 2 * MaxPending / len(line) {
			_, _ = w.Write(line)
			n++
		}
		wrote <- n
	}()
	testenv.WaitFor(t, 30*time.Second, "the writes to fill MaxPending", func() bool { return pendingBytes() >= MaxPending })
	time.Sleep(100 * time.Millisecond) // a Write that does not wait would go on past MaxPending
	pending := pendingBytes()
	if pending > MaxPending+len(line) {
		t.Fatalf("%d bytes pending with the output stuck, want at most %d", pending, MaxPending+len(line))
	}
	select {
	case n := <-wrote:
		t.Fatalf("all %d writes returned with the output stuck", n)
	default:
	}
	close(out.block)
	n := <-wrote
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	text, _ := out.snapshot()
	if want := len("first\n") + n*len(line); len(text) != want {
		t.Fatalf("%d bytes out, want %d", len(text), want)
	}
}

// TestAfterClose: Close returns the output's first error, and later writes
// go straight to the output.
func TestAfterClose(t *testing.T) {
	t.Parallel()
	out := &recorder{err: errors.New("disk full")}
	w := New(out)
	fmt.Fprintln(w, "a")
	if err := w.Close(); err == nil || err.Error() != "disk full" {
		t.Fatalf("Close = %v, want the output's error", err)
	}
	out.mu.Lock()
	out.err = nil
	out.mu.Unlock()
	if _, err := fmt.Fprintln(w, "b"); err != nil {
		t.Fatal(err)
	}
	text, writes := out.snapshot()
	if text != "a\nb\n" || writes != 2 {
		t.Fatalf("output %q in %d writes", text, writes)
	}
	if lines := strings.Split(strings.TrimSpace(text), "\n"); !slices.Equal(lines, []string{"a", "b"}) {
		t.Fatalf("lines %q", lines)
	}
}
