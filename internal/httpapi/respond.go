package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/pgreach"
)

// errorBody is every error answer: {"error":"..."}.
type errorBody struct {
	Error string `json:"error"`
}

// writeJSON answers status with v as JSON. No JSON answer may be stored by
// a browser or an intermediary cache (some carry an API key shown once,
// others a tenant's data or an authentication failure), nor be sniffed as
// another type: every one says Cache-Control: no-store and
// X-Content-Type-Options: nosniff.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error"}`)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers status with {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// statusClientClosedRequest is the status of a request whose client gave
// up before its answer (nginx's 499): logged and counted as such, not as a
// server error. Nobody reads the answer.
const statusClientClosedRequest = 499

// clientGone answers 499 and reports true when err comes from the client
// giving up on r (its context cancelled, not timed out): not a fault of
// the service, and not worth an error log line.
func clientGone(w http.ResponseWriter, r *http.Request, err error) bool {
	if !errors.Is(err, context.Canceled) || !errors.Is(r.Context().Err(), context.Canceled) {
		return false
	}
	writeError(w, statusClientClosedRequest, "client closed the request")
	return true
}

// internalError logs err with the request id and answers without the
// details: 503 with Retry-After when a dependency (Redis, PostgreSQL) is
// unreachable, so clients know a retry is safe and nothing was accepted;
// 500 otherwise; 499, without an error log, when the client gave up
// (clientGone).
func (h *Handler) internalError(w http.ResponseWriter, r *http.Request, op string, err error) {
	if clientGone(w, r, err) {
		return
	}
	ri := info(r.Context())
	attrs := []slog.Attr{slog.String("request_id", ri.id), slog.String("op", op), slog.Any("error", err)}
	if ri.tenantID != "" {
		attrs = append(attrs, slog.String("tenant_id", ri.tenantID))
	}
	h.log.LogAttrs(r.Context(), slog.LevelError, "http handler error", attrs...)
	if dependencyUnavailable(err) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "service temporarily unavailable, retry later")
		return
	}
	writeError(w, http.StatusInternalServerError, "internal error")
}

// transientRedis are the replies with which Redis refuses commands for a
// moment: loading its data after a restart, a script running too long, a
// replica whose master is down, a cluster slot without a master or in the
// middle of a failover, a demoted master, a server at maxmemory (policy
// noeviction: it refuses writes, and the refused call wrote nothing, until
// memory is freed), a master with min-replicas-to-write whose replicas are
// gone or lagging (it refuses writes until they catch up), a server with
// save points whose last background save failed (MISCONF: a full or lost
// disk; it refuses writes until a save succeeds or an operator sets
// stop-writes-on-bgsave-error no), a server with as many clients as its
// maxclients allows ("ERR max number of clients reached", its answer to a
// new connection, until a client leaves; redis.HasErrorPrefix drops the
// "ERR ").
var transientRedis = []string{"LOADING ", "BUSY ", "MASTERDOWN ", "CLUSTERDOWN ", "TRYAGAIN ", "READONLY ", "OOM ", "NOREPLICAS ", "MISCONF ",
	"max number of clients reached"}

// redisBusy reports whether err says the Redis client found no connection
// or pipeline batch to send a command on in time: every one is held by a
// call that Redis has not answered yet (a stalled or unreachable server),
// so the command was never sent.
func redisBusy(err error) bool {
	return errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, redis.ErrAutoPipelineTimeout) || errors.Is(err, redis.ErrAutoPipelineQueueFull)
}

// dependencyUnavailable reports whether err says Redis or PostgreSQL could
// not be reached (refused or reset connections, timeouts, a server going
// away) or cannot serve for a moment (a Redis replica's READONLY, a
// PostgreSQL taking no writes, or rolling a transaction back for a
// conflict with another), as opposed to a bug or a bad answer.
func dependencyUnavailable(err error) bool {
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	switch {
	case errors.As(err, &netErr), errors.As(err, &connectErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrClosed), errors.Is(err, puddle.ErrClosedPool),
		redisBusy(err):
		return true
	}
	for _, prefix := range transientRedis {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// What the worker waits out (pgreach.Unavailable: class 08,
		// connection exception; class 57P, admin shutdown, crash shutdown,
		// cannot connect now; 25006, a server taking no writes now, a hot
		// standby after a failover), a transaction rolled back for a
		// conflict with another (pgreach.Conflict: 40001, 40P01), and 57014
		// (statement cancelled: the request's time ran out on the server,
		// Options.RequestTimeout).
		return pgreach.Unavailable(pgErr.Code) || pgreach.Conflict(pgErr.Code) || pgErr.Code == "57014"
	}
	return false
}

// errNotObject is decodeExact's error for a body of JSON null.
var errNotObject = errors.New("the body must be an object")

// errBadBody is wrapped by decodeJSON for every body that is not one valid
// JSON object of the expected shape.
var errBadBody = errors.New("invalid request body")

// errNotUTF8 is decodeExact's error for a body with bytes that are not
// UTF-8: JSON text is UTF-8 (RFC 8259), and encoding/json would read each
// such byte as U+FFFD, storing a name other than the one sent.
var errNotUTF8 = errors.New("the body is not valid UTF-8")

// errLoneSurrogate is decodeExact's error for a body with a \u escape of a
// UTF-16 surrogate without its pair ("\ud83d" alone, as JavaScript writes a
// string cut between the two halves of an emoji): it names no character,
// and encoding/json would read it as U+FFFD, storing a name other than the
// one sent.
var errLoneSurrogate = errors.New(`the body has a \u escape of a lone UTF-16 surrogate, which is no character`)

// decodeJSON decodes exactly one JSON object into dst (a pointer to a
// struct), refusing unknown fields (names match exactly, not in any case
// as encoding/json would), a member name given twice and trailing data. It answers the error itself
// (400 or 413, saying what is wrong in the JSON's own terms, never Go's;
// 408 for a body the server's read timeout cut off) and returns false when
// the body is unusable.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) bool {
	body := &bodyReader{r: r.Body}
	dec := json.NewDecoder(body)
	var raw json.RawMessage
	err := dec.Decode(&raw)
	if err == nil {
		err = decodeExact(raw, dst)
	}
	if err == nil {
		// Exactly one value: anything but EOF after it is an error.
		if _, terr := dec.Token(); terr != io.EOF {
			err = fmt.Errorf("trailing data after the JSON object")
			if terr != nil && isBodyTooLarge(terr) {
				err = terr
			}
		}
	}
	switch {
	case err == nil:
		return true
	case isBodyTooLarge(err):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
	case body.err != nil:
		// The body could not be read: its error names the service's and
		// the peer's socket addresses, or net/http's parsing; the client
		// is told only which of the two it was.
		var netErr net.Error
		if errors.As(body.err, &netErr) && netErr.Timeout() {
			writeError(w, http.StatusRequestTimeout, "request body not received in time")
			return false
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%v: it could not be read", errBadBody))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%v: empty body", errBadBody))
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%v: %s", errBadBody, bodyProblem(err)))
	}
	return false
}

// untimedKey holds the context of a tenant or admin route as it was before
// the route's deadline (Options.RequestTimeout, Options.AdminRequestTimeout)
// was set: the client's cancellation, without that deadline
// (decodeBody).
type untimedKey struct{}

// withUntimed returns timed, the context of r bounded by a route's
// deadline, remembering r's own for decodeBody.
func withUntimed(timed context.Context, r *http.Request) context.Context {
	return context.WithValue(timed, untimedKey{}, r.Context())
}

// decodeBody is decodeJSON for a route bounded by a deadline (tenant,
// admin). The body's arrival is the client's to take, bounded by the
// server's read timeout (408), not by the route's deadline, which bounds
// the service's own work (look-ups, database, Redis): once the body is
// read, the deadline moves by the time that took, and so does the
// connection's write deadline (the server's write timeout counts from the
// request's start, and must still leave room for an answer given at the
// moved deadline). Otherwise a body that took longer than REQUEST_TIMEOUT
// to arrive, well within the read timeout, was answered 503 as if a
// dependency had not answered, before any work was done. It returns the
// request to go on with and the release of its context, which the caller
// defers (also when the body is refused).
func (h *Handler) decodeBody(w http.ResponseWriter, r *http.Request, dst any) (*http.Request, context.CancelFunc, bool) {
	start := time.Now()
	if !decodeJSON(w, r, dst) {
		return r, func() {}, false
	}
	ctx := r.Context()
	untimed, ok := ctx.Value(untimedKey{}).(context.Context)
	deadline, timed := ctx.Deadline()
	took := time.Since(start)
	if !ok || !timed || took <= 0 {
		return r, func() {}, true
	}
	// The values of ctx (the tenant, its credentials, the request's log
	// attributes), its deadline moved, and the client's cancellation.
	moved, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline.Add(took))
	stop := context.AfterFunc(untimed, cancel)
	if err := extendWriteDeadline(w, r, 0); err != nil {
		h.log.WarnContext(ctx, "extend the write deadline after a request body", "request_id", info(ctx).id, "error", err)
	}
	return r.WithContext(moved), func() { stop(); cancel() }, true
}

// bodyReader remembers the error of reading a request body other than its
// end (a read timeout, a broken chunked encoding, a body shorter than its
// Content-Length), which the JSON decoder returns as it is.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && !isBodyTooLarge(err) { //nolint:errorlint // io.EOF is returned unwrapped by contract
		b.err = err
	}
	return n, err
}

// decodeExact decodes the JSON object raw into dst, a pointer to a struct
// whose fields carry json tags: a member whose name is not exactly one of
// the tags is an unknown field, text that is not UTF-8 is refused
// (errNotUTF8), so is a \u escape of a lone surrogate (errLoneSurrogate),
// and a name given twice is refused, since
// parsers disagree on which of the two counts (encoding/json takes the
// last; a proxy, a firewall rule or an audit reader may take the first).
func decodeExact(raw json.RawMessage, dst any) error {
	if !utf8.Valid(raw) {
		return errNotUTF8
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return err
	}
	if loneSurrogate(raw) {
		return errLoneSurrogate
	}
	if members == nil {
		// JSON null, which encoding/json reads into a map or a struct as
		// nothing at all: it is not an object, and taken for an empty one
		// it would reset every field (PUT .../limits).
		return errNotObject
	}
	if name, ok := duplicateMember(raw); ok {
		return fmt.Errorf("duplicate field %.60q", name)
	}
	st := reflect.TypeOf(dst).Elem()
	known := make(map[string]bool, st.NumField())
	for i := range st.NumField() {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	for name := range members {
		if !known[name] {
			return fmt.Errorf("unknown field %.60q", name)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(dst)
}

// loneSurrogate reports whether the JSON text raw (already known to be
// valid) holds a \u escape of a high surrogate that no escape of a low
// surrogate follows at once, or of a low surrogate that no high one
// precedes.
func loneSurrogate(raw []byte) bool {
	inString, high := false, false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			inString = c == '"'
			continue
		}
		if c != '\\' || raw[i+1] != 'u' {
			if high {
				return true // a high surrogate, then no escape of a low one
			}
			if c == '\\' {
				i++ // a one-character escape: \" \\ \/ \b \f \n \r \t
			} else if c == '"' {
				inString = false
			}
			continue
		}
		v, _ := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		i += 5
		switch r := rune(v); {
		case utf16.IsSurrogate(r) && r < 0xdc00: // high
			if high {
				return true
			}
			high = true
		case utf16.IsSurrogate(r): // low
			if !high {
				return true
			}
			high = false
		case high:
			return true
		}
	}
	return false
}

// duplicateMember returns the first member name that occurs twice in the
// JSON object raw (already known to be valid), if any.
func duplicateMember(raw json.RawMessage) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", false
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		name, _ := tok.(string)
		if seen[name] {
			return name, true
		}
		seen[name] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return "", false
		}
	}
	return "", false
}

// bodyProblem says what is wrong with a request body in JSON's terms:
// encoding/json's own messages name Go types and struct fields.
func bodyProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		want := "a number"
		switch typeErr.Type.Kind() {
		case reflect.String:
			want = "a string"
		case reflect.Bool:
			want = "true or false"
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "an integer"
		case reflect.Slice, reflect.Array:
			want = "an array"
		case reflect.Struct, reflect.Map:
			want = "an object"
		}
		if typeErr.Field == "" {
			return "the body must be " + want
		}
		return fmt.Sprintf("%.60s must be %s", typeErr.Field, want)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("not valid JSON (at byte %d)", syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "not valid JSON (it ends too early)"
	}
	return err.Error()
}

// joinSorted joins names in sorted order with ", ".
func joinSorted(names []string) string {
	slices.Sort(names)
	return strings.Join(names, ", ")
}
