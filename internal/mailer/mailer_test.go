package mailer_test

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

	"go.uber.org/goleak"

	"github.com/invoicing/tenantworker/internal/mailer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testMessage is a reminder-like message with a PDF attachment.
func testMessage() mailer.Message {
	return mailer.Message{
		From:      "billing@example.com",
		To:        "Zoë Müller <zoe@example.org>",
		Subject:   "Reminder: invoice INV-0042 is overdue",
		Text:      "Amount due: EUR 1,234.50\nDue date: 2026-01-31\n",
		MessageID: "<reminder-acme-42-2026-02-01@tenantworker>",
		Attachments: []mailer.Attachment{{
			Name: "INV-0042.pdf", ContentType: "application/pdf",
			Data: append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte{0, 0xff, '\r', '\n', 'x'}, 300)...),
		}},
	}
}

// parsed is a received message taken apart.
type parsed struct {
	header      mail.Header
	text        string
	attachments map[string][]byte // file name -> decoded content
	types       map[string]string // file name -> content type
}

// parseMessage parses raw with net/mail and walks its MIME parts.
func parseMessage(t *testing.T, raw []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail.ReadMessage: %v\n%s", err, raw)
	}
	p := parsed{header: msg.Header, attachments: map[string][]byte{}, types: map[string]string{}}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		body, _ := io.ReadAll(msg.Body)
		p.text = decodeBody(t, msg.Header.Get("Content-Transfer-Encoding"), body)
		return p
	}
	walkMultipart(t, multipart.NewReader(msg.Body, params["boundary"]), &p)
	return p
}

func walkMultipart(t *testing.T, r *multipart.Reader, p *parsed) {
	t.Helper()
	for {
		part, err := r.NextRawPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("next MIME part: %v", err)
		}
		mt, params, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type %q: %v", part.Header.Get("Content-Type"), err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			walkMultipart(t, multipart.NewReader(part, params["boundary"]), p)
			continue
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("read MIME part: %v", err)
		}
		content := decodeBody(t, part.Header.Get("Content-Transfer-Encoding"), body)
		if name := part.FileName(); name != "" {
			p.attachments[name] = []byte(content)
			p.types[name] = mt
			continue
		}
		if mt == "text/plain" {
			p.text += content
		}
	}
}

func decodeBody(t *testing.T, encoding string, body []byte) string {
	t.Helper()
	switch strings.ToLower(encoding) {
	case "base64":
		b, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(body)))
		if err != nil {
			t.Fatalf("base64 part: %v", err)
		}
		return string(b)
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			t.Fatalf("quoted-printable part: %v", err)
		}
		return string(b)
	}
	return string(body)
}

// checkReminder checks that p is testMessage() as sent.
func checkReminder(t *testing.T, p parsed) {
	t.Helper()
	want := testMessage()
	if got := p.header.Get("Message-Id"); got != want.MessageID {
		t.Errorf("Message-ID = %q, want %q", got, want.MessageID)
	}
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(p.header.Get("Subject"))
	if err != nil || subject != want.Subject {
		t.Errorf("Subject = %q (%v), want %q", subject, err, want.Subject)
	}
	to, err := p.header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != "zoe@example.org" || to[0].Name != "Zoë Müller" {
		t.Errorf("To = %v (%v), want Zoë Müller <zoe@example.org>", to, err)
	}
	from, err := p.header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != want.From {
		t.Errorf("From = %v (%v), want %s", from, err, want.From)
	}
	if _, err := p.header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if got := strings.ReplaceAll(p.text, "\r\n", "\n"); got != want.Text {
		t.Errorf("text body = %q, want %q", got, want.Text)
	}
	a := want.Attachments[0]
	if got, ok := p.attachments[a.Name]; !ok || !bytes.Equal(got, a.Data) {
		t.Errorf("attachment %s: present %v, %d bytes, want the %d bytes sent", a.Name, ok, len(got), len(a.Data))
	}
	if got := p.types[a.Name]; got != a.ContentType {
		t.Errorf("attachment content type = %q, want %q", got, a.ContentType)
	}
}

func TestCheckSender(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"billing@example.com":           true,
		"Billing <billing@example.com>": true,
		"first.last+tag@example.com":    true,
		`"billing dept"@example.com`:    false,
		`Billing <"a>b"@example.com>`:   false,
		"not an address":                false,
		"":                              false,
		"a@example.com, b@example.com":  false,
		"Zoë <zoë@example.com>":         true,
	} {
		if err := mailer.CheckSender(addr); (err == nil) != ok {
			t.Errorf("CheckSender(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}
