package httpapi_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSlowDownloadOfALargePDFCompletes: a PDF may be up to PDF_MAX_BYTES
// (16 MiB), and the server's WriteTimeout (60 s, counted from the request)
// cut its body part-way for a client slower than 16 MiB a minute (a
// mobile link): the download failed every time, and without Range support
// it could not be resumed either. The body now gets time for its size.
func TestSlowDownloadOfALargePDFCompletes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	content := make([]byte, 16<<20)
	rng := rand.NewChaCha8([32]byte{7}) // incompressible, like a PDF's streams
	_, _ = rng.Read(content)
	id, sum := b.storeDocument(t, acme, "INV-LARGE", content)

	// The service's WriteTimeout scaled down: 1 s instead of 60 s, for a
	// client reading 16 MiB at about 2 MiB/s (8 s) instead of 16 MiB in
	// 8 minutes. The socket buffers of loopback (up to about 10 MiB)
	// cannot hide the difference.
	srv := httptest.NewUnstartedServer(b.handler)
	srv.Config.WriteTimeout = time.Second
	srv.Start()
	t.Cleanup(srv.Close)

	req, err := http.NewRequest(http.MethodGet, srv.URL+fmt.Sprintf("/v1/invoices/%d/pdf", id), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = acme.host()
	req.Header.Set("Authorization", "Bearer "+acme.key)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := sha256.New()
	var got int64
	var readErr error
	chunk := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(resp.Body, chunk)
		h.Write(chunk[:n])
		got += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF && got == int64(len(content)) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		time.Sleep(30 * time.Millisecond) // about 2 MiB/s
	}
	if readErr != nil || got != int64(len(content)) || hex.EncodeToString(h.Sum(nil)) != sum {
		t.Fatalf("slow download of a %d-byte PDF: got %d bytes (%v); want all of it", len(content), got, readErr)
	}
}
