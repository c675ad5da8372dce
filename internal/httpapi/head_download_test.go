package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/storage"
)

// readCounting is a DocumentStore whose opened documents count the bytes
// read from them.
type readCounting struct {
	storage.DocumentStore
	read *atomic.Int64
}

func (s readCounting) Open(ctx context.Context, tenantID, key string) (io.ReadCloser, storage.DocumentInfo, error) {
	rc, di, err := s.DocumentStore.Open(ctx, tenantID, key)
	if err != nil {
		return nil, di, err
	}
	return countedReader{rc, s.read}, di, nil
}

type countedReader struct {
	io.ReadCloser
	read *atomic.Int64
}

func (r countedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.read.Add(int64(n))
	return n, err
}

// TestHeadOfAPDFReadsNoBody: HEAD /v1/invoices/{id}/pdf (which the GET
// route answers) copied the whole document into a response that sends
// no body, so a HEAD cost the file's read, and the access log recorded
// the document's size as bytes sent. It answers the headers a GET
// would (Content-Length, ETag) without reading the body, and logs 0
// bytes.
func TestHeadOfAPDFReadsNoBody(t *testing.T) {
	t.Parallel()
	var read atomic.Int64
	b := setup(t, func(o *httpapi.Options) { o.Documents = readCounting{o.Documents, &read} })
	acme := b.active(t, "acme")
	content := []byte(strings.Repeat("%PDF-1.7 fake but bytes\n", 4000))
	id, sum := b.storeDocument(t, acme, "INV-HEAD", content)
	path := fmt.Sprintf("/v1/invoices/%d/pdf", id)

	get := b.do(t, request{method: http.MethodGet, host: acme.host(), path: path, bearer: acme.key})
	wantStatus(t, get, http.StatusOK)
	if got := read.Swap(0); got != int64(len(content)) {
		t.Fatalf("GET read %d bytes of the document, want %d", got, len(content))
	}
	b.logs.Reset()

	head := b.do(t, request{method: http.MethodHead, host: acme.host(), path: path, bearer: acme.key})
	wantStatus(t, head, http.StatusOK)
	for _, k := range []string{"Content-Type", "Etag", "Content-Length", "Content-Disposition", "Cache-Control"} {
		if got, want := head.header.Get(k), get.header.Get(k); got != want {
			t.Errorf("HEAD %s: %q, want GET's %q", k, got, want)
		}
	}
	if head.header.Get("Etag") != `"`+sum+`"` || head.header.Get("Content-Length") != strconv.Itoa(len(content)) {
		t.Errorf("HEAD: ETag %q, Content-Length %q", head.header.Get("Etag"), head.header.Get("Content-Length"))
	}
	if got := read.Load(); got != 0 {
		t.Errorf("HEAD read %d bytes of the document's body, want none", got)
	}
	logged := false
	for _, l := range strings.Split(strings.TrimSpace(b.logs.String()), "\n") {
		var line struct {
			Msg    string  `json:"msg"`
			Method string  `json:"method"`
			Bytes  float64 `json:"bytes"`
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if line.Msg != "http request" || line.Method != http.MethodHead {
			continue
		}
		logged = true
		if line.Bytes != 0 {
			t.Errorf("HEAD logged %v bytes sent, want 0:\n%s", line.Bytes, l)
		}
	}
	if !logged {
		t.Fatalf("no access log line of the HEAD:\n%s", b.logs.String())
	}
}
