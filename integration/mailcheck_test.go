package integration

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// email is one .eml file of a file-mailer outbox, decoded.
type email struct {
	path      string
	messageID string
	to        string // the bare address
	subject   string
	text      string   // every text/* part, decoded
	pdfs      [][]byte // application/pdf attachments
	// tenantID, invoiceID and day come from the reminder's Message-ID
	// (<reminder-{tenant}-{invoice}-{day}@...>): the task the email was
	// sent for.
	tenantID  string
	invoiceID int64
	day       string
}

// reminderIDRE parses a reminder's Message-ID.
var reminderIDRE = regexp.MustCompile(`^<?reminder-([a-z0-9_]+)-(\d+)-(\d{4}-\d{2}-\d{2})@[^>]+>?$`)

// readOutboxes parses every .eml file in dirs (temporary files excluded).
func readOutboxes(dirs ...string) ([]email, error) {
	var out []email
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".eml") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			m, err := parseEML(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// parseEML reads one message.
func parseEML(path string) (email, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return email{}, err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return email{}, fmt.Errorf("%s: %w", path, err)
	}
	m := email{path: path, messageID: strings.TrimSpace(msg.Header.Get("Message-ID"))}
	to, err := mail.ParseAddress(msg.Header.Get("To"))
	if err != nil {
		return email{}, fmt.Errorf("%s: To %q: %w", path, msg.Header.Get("To"), err)
	}
	m.to = to.Address
	dec := new(mime.WordDecoder)
	if m.subject, err = dec.DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return email{}, fmt.Errorf("%s: subject: %w", path, err)
	}
	if err := m.readPart(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body); err != nil {
		return email{}, fmt.Errorf("%s: %w", path, err)
	}
	if sm := reminderIDRE.FindStringSubmatch(m.messageID); sm != nil {
		m.tenantID, m.day = sm[1], sm[3]
		m.invoiceID, _ = strconv.ParseInt(sm[2], 10, 64)
	}
	return m, nil
}

// readPart decodes a (possibly multipart) body into m.text and m.pdfs.
func (m *email) readPart(contentType, encoding string, body io.Reader) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(body, params["boundary"])
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := m.readPart(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err != nil {
				return err
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body) // skips CR and LF
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("decode %s part: %w", mt, err)
	}
	switch {
	case strings.HasPrefix(mt, "text/"):
		m.text += string(data)
	case mt == "application/pdf":
		m.pdfs = append(m.pdfs, data)
	}
	return nil
}
