package testenv

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
)

// FakePostgres listens on loopback and hands each connection, after it
// read the 8-byte SSLRequest a PostgreSQL client opens with, to answer;
// the connection is closed when answer returns. It returns the address
// (host:port), closed in t.Cleanup. Tests use it for servers that answer
// as no real PostgreSQL here does: a TLS handshake with an untrusted
// certificate (UntrustedTLS), a close during the handshake, silence.
func FakePostgres(t testing.TB, answer func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req := make([]byte, 8)
				if _, err := io.ReadFull(c, req); err != nil {
					return
				}
				answer(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// UntrustedTLS is a FakePostgres answer: it accepts the SSLRequest ('S')
// and completes a TLS handshake with a certificate of a test CA that no
// client trusts, as a server whose certificate sslmode=verify-full
// rejects.
func UntrustedTLS(t testing.TB) func(c net.Conn) {
	t.Helper()
	files := WriteTLSFiles(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	return func(c net.Conn) {
		if _, err := c.Write([]byte{'S'}); err == nil {
			_ = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
		}
	}
}
