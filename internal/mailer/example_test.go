package mailer_test

import (
	"context"
	"fmt"
	"log"
	"net/mail"
	"os"
	"path/filepath"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// With no SMTP URL, FromConfig writes each message as an .eml file into the
// outbox directory.
func ExampleFromConfig() {
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	m, err := mailer.FromConfig("", dir)
	if err != nil {
		log.Fatal(err)
	}
	err = m.Send(context.Background(), mailer.Message{
		From:      "billing@example.com",
		To:        "customer@example.org",
		Subject:   "Reminder: invoice INV-7 is overdue",
		Text:      "Amount due: EUR 120.00\n",
		MessageID: "<reminder-acme-7-2026-03-01@example.com>",
	})
	if err != nil {
		log.Fatal(err)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	f, _ := os.Open(files[0])
	defer f.Close()
	msg, _ := mail.ReadMessage(f)
	fmt.Println(len(files), msg.Header.Get("Subject"), msg.Header.Get("Message-Id"))
	// Output: 1 Reminder: invoice INV-7 is overdue <reminder-acme-7-2026-03-01@example.com>
}
