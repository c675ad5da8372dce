package mailer

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// ErrBadRecipient is wrapped by the error of a message whose To address
// does not parse (RFC 5322, one address): sending it again cannot succeed.
// The error does not repeat the address, which is personal data.
var ErrBadRecipient = errors.New("recipient address does not parse")

// CheckRecipient returns nil when addr is an address Send accepts as To,
// and an error wrapping ErrBadRecipient otherwise.
func CheckRecipient(addr string) error {
	_, err := parseRecipient(addr)
	return err
}

// parseRecipient parses a To address.
func parseRecipient(addr string) (*mail.Address, error) {
	if strings.TrimSpace(addr) == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadRecipient)
	}
	a, err := mail.ParseAddress(addr)
	if err != nil {
		// net/mail's reason may quote part of the address: left out.
		return nil, fmt.Errorf("%w: not one RFC 5322 address", ErrBadRecipient)
	}
	return a, nil
}

// cleanAddress returns a with its display name passed through OneLine: a
// display name comes from data (a customer's email field may hold
// "Name <addr>", and RFC 2047 encoded words decode to any character).
func cleanAddress(a *mail.Address) *mail.Address {
	return &mail.Address{Name: OneLine(a.Name), Address: a.Address}
}

// attachmentName returns name as a safe file name: one line (OneLine),
// without path separators, never empty.
func attachmentName(name string) string {
	name = strings.NewReplacer("/", "_", `\`, "_").Replace(OneLine(name))
	if strings.Trim(name, ". ") == "" {
		return "attachment"
	}
	return name
}

// buildMsg turns m into a go-mail message: From, To, Subject, Date, the
// Message-ID (m.MessageID when set, angle brackets optional, else a random
// one), a text/plain body and one base64 part per attachment.
//
// Every header value that can come from data is made safe here, whoever
// built m: display names, the Subject and attachment names pass through
// OneLine, the body through Text. A To address that does not parse is
// ErrBadRecipient.
func buildMsg(m Message, now time.Time) (*gomail.Msg, error) {
	msg := gomail.NewMsg()
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("from %q: %w", m.From, err)
	}
	msg.FromMailAddress(cleanAddress(from))
	to, err := parseRecipient(m.To)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	msg.ToMailAddress(cleanAddress(to))
	msg.Subject(OneLine(m.Subject))
	msg.SetDateWithValue(now)
	if id := strings.Trim(strings.TrimSpace(m.MessageID), "<>"); id != "" {
		if strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' || r == '<' || r == '>' }) || !strings.Contains(id, "@") {
			return nil, fmt.Errorf("message id %q: want id-left@id-right", m.MessageID)
		}
		msg.SetMessageIDWithValue(id)
	} else {
		msg.SetMessageID()
	}
	msg.SetBodyString(gomail.TypeTextPlain, Text(m.Text))
	for _, a := range m.Attachments {
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		msg.AttachReadSeeker(attachmentName(a.Name), bytes.NewReader(a.Data),
			gomail.WithFileContentType(gomail.ContentType(ct)), gomail.WithFileEncoding(gomail.EncodingB64))
	}
	return msg, nil
}
