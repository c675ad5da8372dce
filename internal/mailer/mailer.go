// Package mailer sends reminder emails: over SMTP when SMTP_URL is set,
// otherwise as one .eml file per message in an outbox directory.
package mailer

import "context"

// Attachment is a file attached to a message.
type Attachment struct {
	Name        string
	ContentType string
	Data        []byte
}

// Message is one email. MessageID, when set, is used as the Message-ID
// header so that a resend of the same reminder can be recognised.
//
// Both mailers clean what they send: display names in From and To, the
// Subject and attachment names are folded to one line without control or
// bidirectional characters (OneLine), and the body loses its control and
// bidirectional characters (Text). Text holding "=?" cannot pass an RFC
// 2047 encoded word to the reader: such a Subject is sent as encoded words
// that decode to the text itself, such a display name is left out. A
// caller that puts values into the body folds them with OneLine itself:
// only it knows where a line ends.
type Message struct {
	From        string
	To          string
	Subject     string
	Text        string
	MessageID   string
	Attachments []Attachment
}

// Mailer sends messages. Send honours ctx; a nil error means the message was
// accepted (by the SMTP server, or written durably to the outbox). An error
// wrapping ErrBadRecipient or ErrRecipientRefused means the message can
// never be sent as it is; one wrapping ErrRecipientNeedsSMTPUTF8 that it
// can never be sent as it is through that SMTP server.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}
