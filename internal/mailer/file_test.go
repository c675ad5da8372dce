package mailer_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer"
)

func TestFileWritesParseableMessageWithAttachment(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "outbox") // created by NewFile
	f, err := mailer.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("outbox holds %d entries, want 1 (no temporary files left)", len(entries))
	}
	name := entries[0].Name()
	if !regexp.MustCompile(`^[0-9]{19}-reminder-acme-42-2026-02-01@tenantworker\.eml$`).MatchString(name) {
		t.Errorf("file name %q, want <unix-nano>-<message id>.eml", name)
	}
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	checkReminder(t, parseMessage(t, raw))
}

func TestFileSanitizesMessageIDInName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, err := mailer.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	m.MessageID = "<a/../../b$c@x>"
	if err := f.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || !strings.HasSuffix(entries[0].Name(), "-a_.._.._b_c@x.eml") {
		t.Fatalf("outbox = %v, want one file ending in -a_.._.._b_c@x.eml", entries)
	}
}

func TestFileConcurrentSendsWriteSeparateFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, err := mailer.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			m := testMessage()
			m.MessageID = "" // a random one each
			if err := f.Send(context.Background(), m); err != nil {
				t.Errorf("Send: %v", err)
			}
		})
	}
	wg.Wait()
	entries, _ := os.ReadDir(dir)
	if len(entries) != n {
		t.Fatalf("outbox holds %d files, want %d", len(entries), n)
	}
}

func TestFileCancelledContextWritesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, err := mailer.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Send(ctx, testMessage()); err == nil {
		t.Fatal("Send with a cancelled context succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("outbox = %v, want empty", entries)
	}
}

func TestFileRejectsBadInput(t *testing.T) {
	t.Parallel()
	if _, err := mailer.NewFile(""); err == nil {
		t.Error("NewFile(\"\") succeeded")
	}
	f, err := mailer.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(*mailer.Message){
		func(m *mailer.Message) { m.To = "not an address" },
		func(m *mailer.Message) { m.From = "" },
		func(m *mailer.Message) { m.MessageID = "<no-at-sign>" },
		func(m *mailer.Message) { m.MessageID = "<a@b>\r\nBcc: x@y" },
	} {
		m := testMessage()
		mod(&m)
		if err := f.Send(context.Background(), m); err == nil {
			t.Errorf("Send(%+v) succeeded", m)
		}
	}
	if entries, _ := os.ReadDir(f.Dir()); len(entries) != 0 {
		t.Fatalf("outbox = %v, want empty", entries)
	}
}

func TestFromConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, err := mailer.FromConfig("", dir)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := m.(*mailer.File); !ok || f.Dir() != dir {
		t.Errorf("FromConfig(\"\", dir) = %T %v, want *File in dir", m, m)
	}
	m, err = mailer.FromConfig("smtp://u:p@mail.example.com:2525", dir)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := m.(*mailer.SMTP); !ok || s.String() != "smtp://u@mail.example.com:2525" {
		t.Errorf("FromConfig(smtp URL) = %T %v, want *SMTP smtp://u@mail.example.com:2525", m, m)
	}
	if _, err := mailer.FromConfig("", ""); err == nil {
		t.Error("FromConfig with neither SMTP URL nor outbox succeeded")
	}
}
