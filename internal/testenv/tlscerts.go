package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/redisserver"
)

// TLSFiles are the PEM files of a test certificate authority and of a
// server certificate it signed, for "localhost" and 127.0.0.1.
type TLSFiles struct {
	// CA is the authority's certificate (what a client must trust).
	CA string
	// Cert and Key are the server's certificate and private key (0600).
	Cert, Key string
}

// WriteTLSFiles writes a new test CA and a server certificate for
// "localhost" and 127.0.0.1 signed by it into dir.
func WriteTLSFiles(t testing.TB, dir string) TLSFiles {
	t.Helper()
	ca := newTestCA(t)
	f := TLSFiles{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server.key")}
	writePEM(t, f.CA, "CERTIFICATE", ca.der, 0o644)
	ca.issue(t, f.Cert, f.Key, "localhost", "localhost", "127.0.0.1")
	return f
}

// WriteCerts writes a new test CA into dir as ca.pem, and for each name
// (a DNS name or an IP address) a server certificate the CA signed for
// that name alone, as <name>.pem and <name>.key. It returns ca.pem's
// path.
func WriteCerts(t testing.TB, dir string, names ...string) string {
	t.Helper()
	ca := newTestCA(t)
	path := filepath.Join(dir, "ca.pem")
	writePEM(t, path, "CERTIFICATE", ca.der, 0o644)
	for _, name := range names {
		ca.issue(t, filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"), name, name)
	}
	return path
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert   *x509.Certificate
	der    []byte
	key    *ecdsa.PrivateKey
	serial int64
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tenantworker test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, der: der, key: key, serial: 1}
}

// issue writes a server certificate signed by ca for the names (DNS names
// or IP addresses), and its private key (0600), to certPath and keyPath.
func (ca *testCA) issue(t testing.TB, certPath, keyPath, commonName string, names ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.serial++
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Client too: TLS-only cluster nodes, replicas and Sentinels
		// present it when they dial each other.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certPath, "CERTIFICATE", der, 0o644)
	writePEM(t, keyPath, "EC PRIVATE KEY", keyDER, 0o600)
}

// writePEM writes der as one PEM block of type typ to path.
func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

// redisTLS returns f as redisserver's TLS files (nil for nil f).
func (f *TLSFiles) redisTLS() *redisserver.TLS {
	if f == nil {
		return nil
	}
	return &redisserver.TLS{CA: f.CA, Cert: f.Cert, Key: f.Key}
}
