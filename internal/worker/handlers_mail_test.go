package worker_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
)

// receivedMail is an email taken apart: headers, text body, attachments.
type receivedMail struct {
	Header      mail.Header
	Subject     string
	Text        string
	Attachments map[string][]byte
}

// parseMail parses a raw RFC 5322 message with net/mail and mime/multipart.
func parseMail(t *testing.T, raw []byte) receivedMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse mail: %v\n%s", err, raw)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("decode subject: %v", err)
	}
	m := receivedMail{Header: msg.Header, Subject: subject, Attachments: map[string][]byte{}}
	walkMail(t, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, &m)
	return m
}

func walkMail(t *testing.T, contentType, encoding string, body io.Reader, m *receivedMail) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		t.Fatalf("content type %q: %v", contentType, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(body, params["boundary"])
		for {
			part, err := r.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("mime part: %v", err)
			}
			if name := part.FileName(); name != "" {
				m.Attachments[name] = decodePart(t, part.Header.Get("Content-Transfer-Encoding"), part)
				continue
			}
			walkMail(t, part.Header.Get("Content-Type"), part.Header.Get("Content-Transfer-Encoding"), part, m)
		}
	}
	if mt == "text/plain" {
		m.Text += strings.ReplaceAll(string(decodePart(t, encoding, body)), "\r\n", "\n")
	}
}

func decodePart(t *testing.T, encoding string, r io.Reader) []byte {
	t.Helper()
	switch strings.ToLower(encoding) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r)
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s part: %v", encoding, err)
	}
	return b
}
