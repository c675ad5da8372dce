package mailer

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"
)

// buildMsg turns m into a go-mail message: From, To, Subject, Date, the
// Message-ID (m.MessageID when set, angle brackets optional, else a random
// one), a text/plain body and one base64 part per attachment.
func buildMsg(m Message, now time.Time) (*mail.Msg, error) {
	msg := mail.NewMsg()
	if err := msg.From(m.From); err != nil {
		return nil, fmt.Errorf("from %q: %w", m.From, err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("to %q: %w", m.To, err)
	}
	msg.Subject(m.Subject)
	msg.SetDateWithValue(now)
	if id := strings.Trim(strings.TrimSpace(m.MessageID), "<>"); id != "" {
		if strings.ContainsAny(id, "<>\r\n \t") || !strings.Contains(id, "@") {
			return nil, fmt.Errorf("message id %q: want id-left@id-right", m.MessageID)
		}
		msg.SetMessageIDWithValue(id)
	} else {
		msg.SetMessageID()
	}
	msg.SetBodyString(mail.TypeTextPlain, m.Text)
	for _, a := range m.Attachments {
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		msg.AttachReadSeeker(a.Name, bytes.NewReader(a.Data),
			mail.WithFileContentType(mail.ContentType(ct)), mail.WithFileEncoding(mail.EncodingB64))
	}
	return msg, nil
}
