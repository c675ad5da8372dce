package mailer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// File is a Mailer that writes each message as an RFC 5322 .eml file into
// an outbox directory, for development and for deployments without SMTP.
// A file appears atomically (written to a temporary name, fsynced, renamed,
// and the directory fsynced), so a reader never sees half a message and a
// nil error means the message survives a crash. It is safe for concurrent
// use.
type File struct {
	dir string
	now func() time.Time
}

// File implements Mailer.
var _ Mailer = (*File)(nil)

// NewFile returns a File mailer writing into dir, creating it if needed.
func NewFile(dir string) (*File, error) {
	if dir == "" {
		return nil, errors.New("new file mailer: empty outbox directory")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("new file mailer: %w", err)
	}
	return &File{dir: dir, now: time.Now}, nil
}

// Dir returns the outbox directory.
func (f *File) Dir() string { return f.dir }

// Send writes m as <unix-nano>-<sanitized message id>.eml, through a
// temporary file .tmp-<unix-nano>-<sanitized message id>-<random>.eml
// renamed when complete. It returns ctx's error without writing when ctx
// is already done.
func (f *File) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write message to outbox: %w", err)
	}
	now := f.now()
	msg, err := buildMsg(m, now, true)
	if err != nil {
		return fmt.Errorf("write message to outbox: %w", err)
	}
	name := strconv.FormatInt(now.UnixNano(), 10) + "-" + sanitizeID(msg.GetMessageID()) + ".eml"
	// The temporary file carries the message's name too: one left by a
	// process killed while writing it holds the whole message (the
	// customer's address, the invoice), and an erasure finds it by that
	// name (*-reminder-<tenant id>-*.eml) like the messages written.
	tmp, err := os.CreateTemp(f.dir, ".tmp-"+strings.TrimSuffix(name, ".eml")+"-*.eml")
	if err != nil {
		return fmt.Errorf("write message to outbox: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := msg.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write message %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write message %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write message %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(f.dir, name)); err != nil {
		return fmt.Errorf("write message %s: %w", name, err)
	}
	if err := syncDir(f.dir); err != nil {
		return fmt.Errorf("write message %s: %w", name, err)
	}
	return nil
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// maxIDInName bounds the message-id part of a file name.
const maxIDInName = 120

// sanitizeID makes a Message-ID safe as part of a file name: the angle
// brackets go, every byte outside [A-Za-z0-9._@-] becomes '_', and the
// result is at most maxIDInName bytes.
func sanitizeID(id string) string {
	id = strings.Trim(id, "<>")
	var b strings.Builder
	for i := 0; i < len(id) && b.Len() < maxIDInName; i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '@', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "message"
	}
	return b.String()
}
