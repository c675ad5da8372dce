package mailer_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// killedWriterEnv names the outbox of the helper process of
// TestFileKilledMidWriteLeavesAFileOfItsMessage.
const killedWriterEnv = "TENANTWORKER_TEST_OUTBOX_KILLED_WRITER"

// TestFileKilledMidWriteLeavesAFileOfItsMessage: a worker killed (kill -9)
// while it writes a reminder into the outbox leaves the temporary file,
// which holds the customer's name, address and invoice. Erasing a tenant
// means removing its reminders from OUTBOX_DIR by their name
// (*-reminder-<tenant id>-*.eml, docs/operations.md "Deleting a tenant"), so that
// file must carry the message's name too, or it is never found.
func TestFileKilledMidWriteLeavesAFileOfItsMessage(t *testing.T) {
	if dir := os.Getenv(killedWriterEnv); dir != "" {
		killedWriter(dir)
		return
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "outbox")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var left []string
	for attempt := 0; attempt < 20 && len(left) == 0; attempt++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileKilledMidWriteLeavesAFileOfItsMessage$")
		cmd.Env = append(os.Environ(), killedWriterEnv+"="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(left) == 0 && time.Now().Before(deadline) {
			left = temporary(t, dir)
			if len(left) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		left = temporary(t, dir)
	}
	if len(left) == 0 {
		t.Skip("the writer was never killed while it wrote a message")
	}
	for _, name := range left {
		if ok, _ := filepath.Match("*-reminder-acme-*.eml", name); !ok {
			t.Errorf("a message cut off by a kill -9 left %q in the outbox, which the tenant's erasure (*-reminder-acme-*.eml) does not find", name)
		}
	}
}

// temporary lists the files in dir that are not complete messages
// (<unix-nano>-<message id>.eml).
func temporary(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// killedWriter writes reminders with a large attachment into dir until it
// is killed.
func killedWriter(dir string) {
	f, err := mailer.NewFile(dir)
	if err != nil {
		os.Exit(2)
	}
	m := mailer.Message{
		From: "billing@example.com", To: "Zoë Müller <zoe@example.org>",
		Subject: "Reminder: invoice INV-0042 is overdue", Text: "Amount due: EUR 1,234.50\n",
		MessageID: "<reminder-acme-42-2026-02-01@tenantworker>",
		Attachments: []mailer.Attachment{{Name: "INV-0042.pdf", ContentType: "application/pdf",
			Data: bytes.Repeat([]byte("%PDF-1.4 customer data\n"), 1<<20)}},
	}
	for {
		if err := f.Send(context.Background(), m); err != nil {
			os.Exit(3)
		}
	}
}
