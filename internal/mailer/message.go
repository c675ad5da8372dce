package mailer

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"
	"golang.org/x/net/idna"
)

// ErrBadRecipient is wrapped by the error of a message whose To address
// does not parse (RFC 5322, one address) or whose local part is not a
// dot-atom: sending it again cannot succeed. The error does not repeat the
// address, which is personal data.
var ErrBadRecipient = errors.New("recipient address does not parse")

// ErrRecipientRefused is wrapped by the error of a message whose recipient
// the mail server refused for good (SMTP: a 5xx reply to RCPT TO, such as
// 550 no such mailbox): sending it again to that address fails the same
// way.
var ErrRecipientRefused = errors.New("recipient refused by the mail server")

// ErrRecipientNeedsSMTPUTF8 is wrapped by the error of a message whose To
// address has a local part that is not ASCII (zoë@example.com) and whose
// SMTP server does not offer SMTPUTF8 (RFC 6531): such an address has no
// ASCII form (unlike a domain, which has its A-label), so nothing is sent,
// not even MAIL FROM, and sending it again through that server fails the
// same way. The mail server refused nothing. The error does not repeat
// the address.
var ErrRecipientNeedsSMTPUTF8 = errors.New("the recipient's local part is not ASCII, which needs a mail server offering SMTPUTF8, and this one does not")

// CheckRecipient returns nil when addr is an address Send accepts as To,
// and an error wrapping ErrBadRecipient otherwise.
func CheckRecipient(addr string) error {
	_, err := parseRecipient(addr)
	return err
}

// CheckSender reports whether addr (MAIL_FROM) can be every reminder's
// sender: one RFC 5322 address whose local part is a dot-atom and whose
// domain, when it is not ASCII, is a valid internationalized domain name
// (IDNA2008, asciiDomain). go-mail puts the address unquoted into MAIL
// FROM, as it does a recipient into RCPT TO, so a local part that needs
// quoting ("billing dept"@example.com) is refused at start instead of
// making a strict server refuse every reminder, retry after retry; so is
// a domain that has no A-label to send to a server without SMTPUTF8.
func CheckSender(addr string) error {
	a, err := mail.ParseAddress(addr)
	if err != nil {
		return fmt.Errorf("not an email address: %w", err)
	}
	at := strings.LastIndex(a.Address, "@")
	if at < 0 || !dotAtom(a.Address[:at]) {
		return fmt.Errorf("the local part of %.80q needs quoting, which the SMTP envelope would not carry", a.Address)
	}
	if _, err := asciiDomain(a.Address[at+1:]); err != nil {
		return fmt.Errorf("the domain of %.80q is not a valid internationalized domain name (IDNA2008): %w", a.Address, err)
	}
	return nil
}

// parseRecipient parses a To address. Its local part must be a dot-atom:
// one that needs quoting ("victim@evil.example> x"@example.org) is
// refused, because go-mail puts it unquoted into RCPT TO
// (<victim@evil.example> x@example.org>), which a lenient server reads as
// another recipient than the one in To and a strict one refuses, each
// time. A domain that is not ASCII must be a valid internationalized
// domain name (asciiDomain): a server without SMTPUTF8 gets its A-label.
func parseRecipient(addr string) (*mail.Address, error) {
	if strings.TrimSpace(addr) == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadRecipient)
	}
	a, err := mail.ParseAddress(addr)
	if err != nil {
		// net/mail's reason may quote part of the address: left out.
		return nil, fmt.Errorf("%w: not one RFC 5322 address", ErrBadRecipient)
	}
	at := strings.LastIndex(a.Address, "@")
	if at < 0 || !dotAtom(a.Address[:at]) {
		return nil, fmt.Errorf("%w: local part needs quoting", ErrBadRecipient)
	}
	if _, err := asciiDomain(a.Address[at+1:]); err != nil {
		// idna's reason quotes the label: left out.
		return nil, fmt.Errorf("%w: domain is not a valid internationalized domain name (IDNA2008)", ErrBadRecipient)
	}
	return a, nil
}

// asciiDomain returns domain as a server without SMTPUTF8 takes it: an
// ASCII domain as it is, one that is not ASCII (müller.de) as its
// A-labels (xn--mller-kva.de), converted by IDNA2008's lookup rules
// (RFC 5891 section 5, idna.Lookup: mapped as UTS 46 maps, Müller.DE is
// xn--mller-kva.de too). A domain those rules refuse (a disallowed code
// point such as U+00A0 or '_', a label with "--" in its third and fourth
// places or starting with a combining mark, a zero-width joiner out of
// its context, a right-to-left label mixing directions) is an error.
// Symbols that UTS 46 keeps though IDNA2008 disallows them ('♥', emoji)
// pass, as resolvers and browsers take them.
func asciiDomain(domain string) (string, error) {
	if isASCII(domain) {
		return domain, nil
	}
	d, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return "", err
	}
	if !isASCII(d) {
		return "", errors.New("no A-label")
	}
	return d, nil
}

// isASCII reports whether s is all ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// errLocalPartNotASCII: an address's local part is not ASCII, which has
// no form a server without SMTPUTF8 takes.
var errLocalPartNotASCII = errors.New("local part is not ASCII")

// asciiAddress returns a with its domain as asciiDomain returns it, for
// a server that does not offer SMTPUTF8: the A-label goes into the
// envelope and the header alike. The display name is kept (go-mail writes
// a display name that is not ASCII as RFC 2047 encoded words). A local
// part that is not ASCII is errLocalPartNotASCII.
func asciiAddress(a *mail.Address) (*mail.Address, error) {
	at := strings.LastIndex(a.Address, "@")
	if at < 0 {
		return a, nil
	}
	if !isASCII(a.Address[:at]) {
		return nil, errLocalPartNotASCII
	}
	d, err := asciiDomain(a.Address[at+1:])
	if err != nil {
		return nil, err
	}
	return &mail.Address{Name: a.Name, Address: a.Address[:at+1] + d}, nil
}

// dotAtom reports whether s is an RFC 5322 dot-atom: atext runs joined by
// single dots. Like net/mail, it counts non-ASCII characters as atext
// (RFC 6532).
func dotAtom(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if part == "" {
			return false
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
				strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r) || r >= utf8.RuneSelf) {
				return false
			}
		}
	}
	return true
}

// cleanAddress returns a with its display name passed through OneLine: a
// display name comes from data (a customer's email field may hold
// "Name <addr>", and RFC 2047 encoded words decode to any character).
//
// A display name that still holds "=?" is left out: it may be (or hold)
// an encoded word, and go-mail writes an ASCII display name as a quoted
// string (net/mail's Address.String), inside which RFC 2047 forbids
// decoding but lenient readers (Thunderbird, Python's email package)
// decode anyway, so "=?utf-8?q?=E2=80=AE?=" would show as a right-to-left
// override. go-mail writes the From header from its address list, so the
// header cannot be written as forced encoded words as the Subject is.
func cleanAddress(a *mail.Address) *mail.Address {
	name := OneLine(a.Name)
	if strings.Contains(name, "=?") {
		name = ""
	}
	return &mail.Address{Name: name, Address: a.Address}
}

// RFC 2047 limits: an encoded word is at most 75 characters, a header line
// holding one at most 76.
const (
	maxEncodedWord = 75
	maxEncodedLine = 76
)

// encodedWords returns s (valid UTF-8) as RFC 2047 base64 encoded words
// ("=?utf-8?b?...?="), one per folded line, each holding whole runes and
// fitting maxEncodedWord and maxEncodedLine; lead is the length of what
// precedes the value on its first line ("Subject: "). A reader decodes
// them to exactly s.
func encodedWords(s string, lead int) string {
	const prefix, suffix = "=?utf-8?b?", "?="
	var words []string
	for s != "" {
		room := min(maxEncodedWord, maxEncodedLine-lead) - len(prefix) - len(suffix)
		maxBytes := max(room/4*3, utf8.UTFMax)
		n := 0
		for n < len(s) {
			_, size := utf8.DecodeRuneInString(s[n:])
			if n+size > maxBytes {
				break
			}
			n += size
		}
		words = append(words, prefix+base64.StdEncoding.EncodeToString([]byte(s[:n]))+suffix)
		s = s[n:]
		lead = 1 // a folded line starts with a space
	}
	return strings.Join(words, "\r\n ")
}

// setSubject sets the Subject to subj (OneLine'd). go-mail leaves an ASCII
// subject as it is, and a reader decodes any encoded word in it: a
// subject from data holding "=?" (an invoice number
// "=?utf-8?q?=E2=80=AE1007?=" would show as a right-to-left override, or
// a line break) is written as forced encoded words instead, which decode
// to the text itself.
func setSubject(msg *gomail.Msg, subj string) {
	if strings.Contains(subj, "=?") {
		msg.SetGenHeaderPreformatted(gomail.HeaderSubject, encodedWords(subj, len(gomail.HeaderSubject)+len(": ")))
		return
	}
	msg.Subject(subj)
}

// attachmentName returns name as a safe file name: one line (OneLine),
// without path separators, never empty, at most MaxLineRunes characters
// and MaxFileNameBytes bytes of UTF-8. A name cut for length is cut
// between characters, ends in "…" and keeps its extension (up to
// maxExtRunes), by which readers open the file.
func attachmentName(name string) string {
	ext := path.Ext(name)
	if OneLine(ext) != ext || strings.ContainsRune(ext, '\\') || utf8.RuneCountInString(ext) > maxExtRunes {
		ext = ""
	}
	stem := []rune(OneLine(strings.TrimSuffix(name, ext)))
	if keep := MaxLineRunes - utf8.RuneCountInString(ext); len(stem) > keep {
		stem = append(stem[:keep-1], '…')
	}
	s := string(stem)
	if len(s)+len(ext) > MaxFileNameBytes {
		// A character of another script is 2-4 bytes: 200 characters
		// were up to 800 bytes, more than a file system takes (255).
		s = strings.TrimSuffix(s, "…")
		s = strings.TrimRightFunc(cutBytes(s, MaxFileNameBytes-len(ext)-len("…")), unicode.IsSpace) + "…"
	}
	name = fileNameReplacer.Replace(s + ext)
	if strings.Trim(name, ". ") == "" {
		return "attachment"
	}
	return name
}

// cutBytes returns the longest prefix of s (valid UTF-8) of at most n
// bytes that does not cut a character's UTF-8 sequence.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// fileNameReplacer replaces the path separators of an attachment name, and
// what go-mail replaced before its names were written by attachmentParam
// (the quote, ':', '<', '>', '?', '|'): a '?' kept would let "=?" start an
// RFC 2047 encoded word, which lenient readers decode in a quoted string.
var fileNameReplacer = strings.NewReplacer("/", "_", `\`, "_", `"`, "_", ":", "_", "<", "_", ">", "_", "?", "_", "|", "_")

// maxParamSection bounds the value of one RFC 2231 section written by
// attachmentParam, so that its folded line stays under 78 characters.
const maxParamSection = 60

// attachmentParam returns the parameter key (name, filename) of an
// attachment's Content-Type or Content-Disposition holding name (from
// attachmentName, so without quotes, backslashes or control characters),
// with the "; " that puts it after the value: a quoted string when name is
// ASCII, else that quoted string holding an ASCII fallback (asciiFallback)
// for readers that know no RFC 2231, followed by RFC 2231 parameter
// sections (UTF-8, percent-encoded), each on a folded line of its own,
// which readers that know RFC 2231 prefer.
// go-mail would write RFC 2047 encoded words inside the quoted string,
// which RFC 2047 forbids: RFC-conforming readers (Go's mime/multipart) then
// show the name as "=?UTF-8?q?...?=", without its extension, and the line
// grows past RFC 5322's 998 characters for a long name.
func attachmentParam(key, name string) string {
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return "; " + key + `="` + name + `"`
	}
	var sections []string
	var cur strings.Builder
	cur.WriteString("utf-8''")
	for _, r := range name {
		// A rune is never split between sections: some readers decode
		// each section on its own.
		var enc strings.Builder
		for _, c := range []byte(string(r)) {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
				enc.WriteByte(c)
			} else {
				fmt.Fprintf(&enc, "%%%02X", c)
			}
		}
		if cur.Len()+enc.Len() > maxParamSection {
			sections = append(sections, cur.String())
			cur.Reset()
		}
		cur.WriteString(enc.String())
	}
	sections = append(sections, cur.String())
	for i, v := range sections {
		sections[i] = fmt.Sprintf("%s*%d*=%s", key, i, v)
	}
	return ";\r\n " + key + `="` + asciiFallback(name) + "\";\r\n " + strings.Join(sections, ";\r\n ")
}

// asciiFallback returns name (from attachmentName) with every rune outside
// ASCII replaced by '_': the name a reader without RFC 2231 shows
// ("invoice-M_ller.pdf" for "invoice-Müller.pdf"), extension kept.
func asciiFallback(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= utf8.RuneSelf {
			return '_'
		}
		return r
	}, name)
}

// maxExtRunes bounds the extension attachmentName keeps of a long name.
const maxExtRunes = 16

// buildMsg turns m into a go-mail message: From, To, Subject, Date, the
// Message-ID (m.MessageID when set, angle brackets optional, else a random
// one), a text/plain body and one base64 part per attachment.
//
// Every header value that can come from data is made safe here, whoever
// built m: display names, the Subject and attachment names pass through
// OneLine, the body through Text. Text that holds "=?" cannot smuggle an
// RFC 2047 encoded word in: such a Subject is written as forced encoded
// words, such a display name is left out, and the '?' of an attachment
// name becomes '_'. An attachment name that is not ASCII is written as RFC
// 2231 parameters beside an ASCII fallback (attachmentParam). A To address
// that does not parse is ErrBadRecipient.
//
// With smtputf8 the addresses are written as they are (RFC 6531/6532: an
// SMTP server that offers SMTPUTF8, or the outbox); without it, for a
// server that does not, their domains are written as A-labels
// (asciiAddress), the same in From and To as in MAIL FROM and RCPT TO,
// which go-mail takes from them, and a local part that is not ASCII, which
// such a server cannot take, is an error: ErrRecipientNeedsSMTPUTF8 for
// To, an ordinary error for From (MAIL_FROM: every message's).
func buildMsg(m Message, now time.Time, smtputf8 bool) (*gomail.Msg, error) {
	msg := gomail.NewMsg()
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("from %q: %w", m.From, err)
	}
	to, err := parseRecipient(m.To)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	if !smtputf8 {
		// The sender first: its failure is every message's, not this
		// recipient's.
		if from, err = asciiAddress(from); errors.Is(err, errLocalPartNotASCII) {
			return nil, errors.New("the sender's (MAIL_FROM's) local part is not ASCII, which needs a mail server offering SMTPUTF8, and this one does not: nothing was sent")
		} else if err != nil {
			return nil, fmt.Errorf("from %q: domain is not a valid internationalized domain name (IDNA2008): %w", m.From, err)
		}
		if to, err = asciiAddress(to); errors.Is(err, errLocalPartNotASCII) {
			return nil, fmt.Errorf("to: %w: nothing was sent", ErrRecipientNeedsSMTPUTF8)
		} else if err != nil {
			// parseRecipient checked the domain.
			return nil, fmt.Errorf("to: %w: domain is not a valid internationalized domain name (IDNA2008)", ErrBadRecipient)
		}
	}
	msg.FromMailAddress(cleanAddress(from))
	msg.ToMailAddress(cleanAddress(to))
	setSubject(msg, OneLine(m.Subject))
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
		name := attachmentName(a.Name)
		msg.AttachReadSeeker(name, bytes.NewReader(a.Data), gomail.WithFileEncoding(gomail.EncodingB64),
			func(f *gomail.File) {
				// go-mail writes these only when they are not set.
				f.Header.Set(string(gomail.HeaderContentType), ct+attachmentParam("name", name))
				f.Header.Set(string(gomail.HeaderContentDisposition), "attachment"+attachmentParam("filename", name))
			})
	}
	return msg, nil
}
