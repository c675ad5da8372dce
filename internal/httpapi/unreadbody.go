package httpapi

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// unreadBodyDrainWait is how long a connection closed for an unread body
// still takes what the client sends of it after the answer (net/http reads
// up to 256 KiB of it when it closes the body): a client that sent its
// body while the answer was written is not reset before it reads the
// answer, and one that sends nothing holds the connection this long, not
// for the server's read timeout.
const unreadBodyDrainWait = time.Second

// closeOnUnreadBody is the outermost wrapper: an answer written while the
// request's body has not been read to its end carries Connection: close.
//
// net/http reads and discards what is left of a body the handler did not
// read (up to 256 KiB) before it writes the status line, so that the
// connection can serve the next request. A client that announces a body
// (Content-Length: 1000) and never sends it would wait the server's read
// timeout for a 405, 401, 403 or 404 written without reading it, holding
// a connection and a goroutine meanwhile: a cheap way to pin the service's
// resources without a key. With Connection: close net/http skips that
// discard, so the answer goes out at once and the connection is closed
// after it; what the client still sends of the body is taken for at most
// unreadBodyDrainWait. Requests without a body, and those whose body was
// read to its end, keep their connection as before. HTTP/2 is left alone:
// there Connection: close makes the server send GOAWAY, refusing the
// connection's next streams, and an unread body holds no connection.
func closeOnUnreadBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body := &trackedBody{ReadCloser: r.Body, length: r.ContentLength}
		uw := &unreadBodyWriter{ResponseWriter: w, body: body}
		r2 := *r
		r2.Body = body
		next.ServeHTTP(uw, &r2)
		// A handler that wrote nothing gets its 200 from net/http, past
		// this writer: decide here.
		uw.beforeHeader()
		if uw.closing {
			// net/http closes the body after the answer, reading what is
			// left of it up to the read deadline (ReadTimeout) before it
			// closes the connection; bound that wait. An error means a
			// writer without deadlines (a test recorder): nothing waits.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(unreadBodyDrainWait))
		}
	})
}

// trackedBody is a request body that knows whether it was read to its
// end: EOF seen, or every announced byte read (a JSON decoder stops after
// the value without asking for the EOF that follows it).
type trackedBody struct {
	io.ReadCloser
	length int64 // Content-Length, -1 when unknown (chunked)
	read   atomic.Int64
	eof    atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	if err == io.EOF { //nolint:errorlint // io.EOF is returned unwrapped by contract
		b.eof.Store(true)
	}
	return n, err
}

// readToEnd reports whether nothing of the body is left to read.
func (b *trackedBody) readToEnd() bool {
	return b.eof.Load() || (b.length >= 0 && b.read.Load() >= b.length)
}

// unreadBodyWriter sets Connection: close on the answer when its header is
// written before the request's body was read to its end.
type unreadBodyWriter struct {
	http.ResponseWriter
	body    *trackedBody
	decided bool
	closing bool // Connection: close was set: the body was not read to its end
}

// beforeHeader runs before the final header is written.
func (w *unreadBodyWriter) beforeHeader() {
	if w.decided {
		return
	}
	w.decided = true
	if !w.body.readToEnd() {
		w.ResponseWriter.Header().Set("Connection", "close")
		w.closing = true
	}
}

func (w *unreadBodyWriter) WriteHeader(code int) {
	if code >= 200 { // informational answers (1xx) are written at once and do not wait for the body
		w.beforeHeader()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *unreadBodyWriter) Write(p []byte) (int, error) {
	w.beforeHeader()
	return w.ResponseWriter.Write(p)
}

// FlushError writes the header (deciding first) and what is buffered;
// http.ResponseController.Flush calls it.
func (w *unreadBodyWriter) FlushError() error {
	w.beforeHeader()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher.
func (w *unreadBodyWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach deadlines and Hijack.
func (w *unreadBodyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
