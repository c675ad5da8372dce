package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// reminderFinishTimeout bounds the part of a reminder that must not be
// interrupted by the task's cancellation: recording the send and
// committing.
const reminderFinishTimeout = 2 * time.Minute

// reminderIdleTimeoutSQL sets idle_in_transaction_session_timeout
// (milliseconds, $1) until the end of the reminder's transaction. The
// transaction stays open, idle, through the send (up to the task's
// deadline less the finish reserve): a server whose own timeout is
// shorter (an operator's guard against forgotten sessions) would end the
// session under a send that went out, the record of it lost with the
// transaction, and the retry would send a second email.
const reminderIdleTimeoutSQL = "SELECT pg_catalog.set_config('idle_in_transaction_session_timeout', $1, true)"

// reminderIdleTimeout is reminderIdleTimeoutSQL's value: the transaction
// never outlives finishCtx (reminderFinishTimeout), so that bound is
// enough for the send and still ends a transaction left behind by a
// worker that froze.
var reminderIdleTimeout = strconv.FormatInt(reminderFinishTimeout.Milliseconds(), 10)

// reminderFinishReserve is how long before the task's deadline a send
// must end (half the time left when the task starts, if that is less): the
// time kept for recording the send, committing and writing the task's
// result. asynq settles a task the moment its deadline passes, whatever
// its handler does next (on the last attempt: archived, "timed out"), so a
// send that went out must be recorded, and the handler return, before it.
const reminderFinishReserve = 10 * time.Second

// sendContext returns the context of a reminder's send: taskCtx, ending
// h's finish reserve (reminderFinishReserve) before taskCtx's deadline.
func (h *Handlers) sendContext(taskCtx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := taskCtx.Deadline()
	if !ok {
		return context.WithCancel(taskCtx)
	}
	reserve := reminderFinishReserve
	if h.finishReserve > 0 {
		reserve = h.finishReserve
	}
	reserve = min(reserve, time.Until(deadline)/2)
	return context.WithDeadline(taskCtx, deadline.Add(-reserve))
}

// maxAttachmentBytes bounds the PDF attached to a reminder.
const maxAttachmentBytes = 20 << 20

// reminderResult is the task result of invoice:reminder: whether this run
// sent the email, and why not when it did not. Tenants read it through
// GET /v1/tasks/{task_id}.
type reminderResult struct {
	Sent   bool   `json:"sent"`
	Reason string `json:"reason,omitempty"`
}

// Reasons a reminder run sends nothing without an error.
const (
	reasonAlreadySent = "already sent today"
	reasonNotOverdue  = ", not overdue" // after "invoice is <status>"
	reasonNothingDue  = "nothing due"
)

// amountDue returns the total inv's document and email show (pdf.Subtotal,
// as printed in the invoice's currency) and whether it is more than zero:
// an overdue invoice whose total is zero or negative (a credit note, a
// full discount) asks for no payment, so it gets no reminder. An invoice
// loaded without its lines (linesLeftOut: more than the line limit) takes
// dbTotal, the same total computed by the database (invoice.QueueTotal).
func amountDue(inv invoice.Invoice, dbTotal decimal.Decimal) (string, bool) {
	doc := document(inv, tenantctx.Tenant{})
	total := pdf.Subtotal(doc)
	if linesLeftOut(inv) {
		total = dbTotal
	}
	total = total.Round(pdf.MinorUnits(doc.Currency))
	return pdf.FormatMoney(total, doc.Currency), total.IsPositive()
}

// linesLeftOut reports whether inv was loaded without its lines: it has
// more than the line limit of its load (invoice.QueueLoadAtMost).
func linesLeftOut(inv invoice.Invoice) bool { return inv.LineCount > len(inv.Lines) }

// alreadySent is the reason of a run that found the reminder of day sent
// (a date), today being today's date.
func alreadySent(day, today string) string {
	if day == today {
		return reasonAlreadySent
	}
	return "already sent on " + day
}

// InvoiceReminder handles invoice:reminder: it emails the customer of an
// invoice that is overdue, at most once per invoice per day (p.Day, a
// calendar day of the tenant's time zone: tenantctx.Tenant.Day). An
// invoice in any other status (paid, cancelled, sent and not yet due, ...)
// is skipped without error, and so is an overdue one with nothing due:
// its total as the document shows it is zero or negative (a credit note),
// and a reminder would ask the customer to pay it. When invoice_documents has a PDF of the
// invoice, the message carries the invoice's PDF as it is now (the stored
// one if it was rendered from what the invoice holds now, else one
// rendered for the message: see attachment), unless the invoice has more
// lines than PDF_MAX_LINES: its lines are then not loaded, and its total
// comes from the database (amountDue). Its task result is
// {"sent","reason"}.
//
// The day's one reminder is the (invoice, day) row of invoice_reminders,
// not the task: the task id only keeps one reminder of an invoice pending
// per day, and a finished one is replaced by the next enqueue (the sweep's,
// or the tenant's POST). So a run that sent nothing (the invoice was not
// overdue yet, or its address did not parse) does not use up the day, and
// a run after a sent reminder sends nothing.
//
// The protocol runs in one transaction of the tenant's schema, at READ
// COMMITTED whatever the database's default_transaction_isolation
// (schema.InTenantReadCommitted):
//
//  1. mark the invoice overdue if it is sent and its due date is before
//     the tenant's current date in its time zone (tenantctx.Tenant.Today;
//     what the sweep does, for this invoice: a reminder asked for between
//     the due date and the next sweep is not skipped), then load it; skip
//     unless it is overdue;
//  2. claim the (invoice, day) row of invoice_reminders (invoice.ClaimReminder:
//     inserted as 'pending' unless it exists, then locked FOR UPDATE), and,
//     when the run is on another day than its own (later: a retry, or a
//     wait in a backlog, past the tenant's midnight; earlier: an enqueuer
//     whose clock runs ahead, unless by at most maxTickLead, when the run
//     is its day's, at its start), today's row too: the reminder then counts
//     for today, and today's sweep sends no second email. Today is the
//     tenant's current calendar day (tenantctx.Tenant.Day). The row locks
//     make a concurrent run of the same reminder (a task re-queued by a shutdown
//     while its first run goes on, P11 in docs/architecture.md), or today's
//     own reminder, wait here until this run commits, and then see 'sent';
//  3. one of those rows 'sent', or a reminder of the invoice sent since
//     the start of the tenant's day under another day's key (a row keyed
//     by its UTC date, written before reminders' days were the tenant's or
//     by a worker of the previous release during an upgrade): done, no
//     email. A customer address that can never be
//     sent to (empty, or not one RFC 5322 address): record 'failed' and
//     archive the task at once with the reason (Permanent); the sweep does
//     not try that address again the same day (invoice.RemindersDue).
//     Otherwise, unless ctx is already cancelled (a shutdown never starts a
//     send), send through h.Mailer. The send ends reminderFinishReserve
//     before the task's deadline (sendContext), not at it: asynq settles a
//     task as soon as its deadline passes, without waiting for the handler,
//     so a send still going on then would be recorded 'sent' by a task
//     already retried, or archived as "timed out" on its last attempt;
//  4. record the outcome on the claimed rows: 'sent' with sent_at, or
//     'failed' and return the
//     send error so the task is retried and sends again; unless the mail
//     server refused the recipient for good (mailer.ErrRecipientRefused:
//     550 no such mailbox), or the address's local part is not ASCII and
//     the mail server does not offer SMTPUTF8
//     (mailer.ErrRecipientNeedsSMTPUTF8: nothing was sent), which archive
//     the task at once like an address that does not parse. Recording and
//     the commit run on context.WithoutCancel(ctx): a send that succeeded is
//     recorded even when the task's ctx is cancelled meanwhile (a
//     shutdown), and normally within the reserve before its deadline, so
//     the task completes with {"sent":true}.
//
// Step 1 keeps the invoice's row locked until the commit, through the
// send, when it marked it (once in an invoice's life): the sweep's
// marking and the app's writes to that invoice wait for it. The
// transaction, idle through the send, sets idle_in_transaction_session_timeout
// for itself (reminderIdleTimeoutSQL), so that a server's shorter one
// does not end it under a send that went out.
//
// One window remains: if the process dies, or the database fails, after
// the SMTP server accepted the message and before the commit, the retry
// sends a second email. Its Message-ID is the same
// (<reminder-{tenant}-{invoice}-{day}@{domain of MailFrom}>, reminderMessageID), so receivers
// that deduplicate on Message-ID drop it.
//
// What a tenant sees of a failure (GET /v1/tasks/{task_id}: state,
// last_error) is what operators see in the task's log line and the
// dashboard. The errors made here name the invoice and the reason, not the
// customer's address; a mail server's own reply to a failed send is passed
// on with the address replaced (mailer.SMTP.Send).
func (h *Handlers) InvoiceReminder(ctx context.Context, p tasks.InvoiceReminder) error {
	t, err := taskTenant(ctx, p)
	if err != nil {
		return err
	}
	pool, err := h.tenantPool(ctx, t)
	if err != nil {
		return err
	}
	day, err := time.Parse(time.DateOnly, p.Day)
	if err != nil {
		return Permanentf("reminder for invoice %d: day %.20q: %w", p.InvoiceID, p.Day, err)
	}
	// Days are the tenant's calendar days. A reminder that runs on
	// another day than its own is also today's (ClaimReminder claims
	// today's row with day's): after it (a retry, or a wait in a backlog,
	// past the tenant's midnight), or before it (an enqueuer whose clock
	// runs ahead, near midnight). The sweep must not send another today.
	// One that runs at most maxTickLead before its day begins by this
	// worker's clock runs at that beginning (tickTime), as the sweep that
	// enqueued it did: the midnight tick's sweep, judged at the tick,
	// enqueues the new day's reminders, and the worker runs them at once.
	// Run as the day before's, such a reminder found that day's sent and
	// sent nothing, and the new day had no reminder until the next sweep
	// (with a daily sweep at the tenant's midnight, none).
	now := t.Today(tickTime(h.now(), dayStart(t, day).Unix()))
	today := t.Day(now)
	taskCtx := ctx
	finishCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reminderFinishTimeout)
	defer cancel()
	// Until the send, the task's end ends the unit too: waiting for a
	// connection and BEGIN run on finishCtx, and a task past its deadline
	// (or cancelled at shutdown) must not go on waiting. At the send,
	// finishCtx is cut loose from the task (keepFinishing).
	keepFinishing := context.AfterFunc(taskCtx, cancel)

	var (
		res      reminderResult
		badAddr  error // the customer's address can never be sent to
		sendErr  error
		detached bool // finishCtx no longer ends with the task: the send began
	)
	// At read committed whatever the database's default: the protocol's
	// row locks wait and then read what the other run committed, and a
	// commit after the send must not be refused (40001) for a conflict
	// with another reminder of the tenant, its email sent again by the
	// retry.
	err = schema.InTenantReadCommitted(finishCtx, pool, func(finishCtx context.Context, tx pgx.Tx) error {
		// Until the send, statements run on the task's ctx: a cancelled
		// task stops here and nothing is sent. The mark, the invoice and
		// its document travel in one round trip: the reads see the mark.
		var (
			inv      invoice.Invoice
			dbTotal  decimal.Decimal
			rendered invoice.Document
			hasPDF   bool
		)
		// An invoice over the renderer's line limit is loaded without its
		// lines: the email gets no PDF of it anyway (the render refuses
		// it), and its total comes from the database, so that its lines
		// cost neither memory nor, past PostgreSQL's 1 GB, the reminder.
		b := &pgx.Batch{}
		b.Queue(reminderIdleTimeoutSQL, reminderIdleTimeout)
		invoice.QueueMarkOverdueIfDue(b, p.InvoiceID, now, nil)
		invoice.QueueLoadAtMost(b, p.InvoiceID, h.maxLines(), h.maxLineBytes(), &inv)
		invoice.QueueTotal(b, p.InvoiceID, &dbTotal)
		invoice.QueueLoadDocument(b, p.InvoiceID, &rendered, &hasPDF)
		if err := tx.SendBatch(taskCtx, b).Close(); err != nil {
			return fmt.Errorf("mark and load invoice %d: %w", p.InvoiceID, err)
		}
		if inv.Status != "overdue" {
			res.Reason = "invoice is " + mailer.OneLine(inv.Status) + reasonNotOverdue
			return nil
		}
		due, ok := amountDue(inv, dbTotal)
		if !ok {
			// A credit note, or a total of zero: no payment to ask for.
			res.Reason = reasonNothingDue + " (total " + mailer.OneLine(due) + ")"
			return nil
		}
		claim, err := invoice.ClaimReminder(taskCtx, tx, p.InvoiceID, inv.Customer.Email, now, day)
		if err != nil {
			return err
		}
		if claim.Status == invoice.ReminderSent {
			res.Reason = alreadySent(claim.SentOn, today)
			return nil
		}
		if badAddr = recipientError(inv.Customer.Email); badAddr != nil {
			return invoice.FinishReminder(taskCtx, tx, p.InvoiceID, invoice.ReminderFailed, inv.Customer.Email, now, day)
		}
		msg, err := h.reminderMessage(taskCtx, t, inv, due, rendered, hasPDF, p)
		if err != nil {
			return err
		}
		sendCtx, cancelSend := h.sendContext(taskCtx)
		defer cancelSend()
		if err := sendCtx.Err(); err != nil {
			// The task ended, or what is left of it is the finish reserve.
			return fmt.Errorf("reminder not sent: %w", err)
		}
		if !keepFinishing() {
			return fmt.Errorf("reminder not sent: %w", taskCtx.Err())
		}
		detached = true
		outcome := invoice.ReminderSent
		if sendErr = h.Mailer.Send(sendCtx, msg); sendErr != nil {
			outcome = invoice.ReminderFailed
		}
		// From here on the task's ctx no longer matters: the outcome is
		// recorded and committed on finishCtx.
		return invoice.FinishReminder(finishCtx, tx, p.InvoiceID, outcome, inv.Customer.Email, now, day)
	})
	switch {
	case errors.Is(err, invoice.ErrNotFound):
		return invoiceNotFound(p.InvoiceID, t.ID)
	case errors.Is(err, invoice.ErrInvalidData):
		return Permanentf("reminder for invoice %d on %s: %w", p.InvoiceID, p.Day, err)
	case err != nil && !detached && taskCtx.Err() != nil:
		// The task ended before the send (finishCtx ended with it).
		return fmt.Errorf("reminder for invoice %d on %s not sent: %w: %w", p.InvoiceID, p.Day, taskCtx.Err(), err)
	case err != nil:
		return fmt.Errorf("reminder for invoice %d on %s: %w", p.InvoiceID, p.Day, err)
	case badAddr != nil:
		return Permanentf("reminder for invoice %d on %s not sent: %w", p.InvoiceID, p.Day, badAddr)
	case errors.Is(sendErr, mailer.ErrBadRecipient), errors.Is(sendErr, mailer.ErrRecipientRefused),
		errors.Is(sendErr, mailer.ErrRecipientNeedsSMTPUTF8):
		return Permanentf("reminder for invoice %d on %s not sent: %w", p.InvoiceID, p.Day, sendErr)
	case sendErr != nil:
		return fmt.Errorf("send reminder for invoice %d on %s: %w", p.InvoiceID, p.Day, sendErr)
	}
	res.Sent = res.Reason == ""
	log := LoggerFromContext(ctx).With(slog.Int64("invoice_id", p.InvoiceID), slog.String("day", p.Day))
	if res.Sent {
		log.InfoContext(ctx, "reminder sent")
	} else {
		log.InfoContext(ctx, "reminder skipped", slog.String("reason", res.Reason))
	}
	return writeResult(ctx, res)
}

// recipientError says why addr, a customer's email field, can never be
// sent to; nil when it can. The reason does not repeat the address.
func recipientError(addr string) error {
	if strings.TrimSpace(addr) == "" {
		return errors.New("customer has no email address")
	}
	if err := mailer.CheckRecipient(addr); err != nil {
		return fmt.Errorf("customer email address: %w", err)
	}
	return nil
}

// reminderMessage builds the reminder email, asking for due (amountDue),
// attaching the invoice's PDF when one was rendered (hasPDF: rendered is
// its invoice_documents row) and the invoice was loaded with its lines.
// A stored PDF that cannot be read is replaced by one rendered for the
// email (attachment); a PDF larger than an attachment may be, or that the
// renderer refuses (an invoice over the line limit), is left out
// (logged), not an error: the reminder matters more than the attachment.
//
// Every value put into the message comes from tenant data (names, the
// invoice number, the currency) and is folded to one line without control
// or bidirectional characters (mailer.OneLine) before it is interpolated:
// a newline in a customer's name must not start a paragraph of its own.
func (h *Handlers) reminderMessage(ctx context.Context, t tenantctx.Tenant, inv invoice.Invoice, due string, rendered invoice.Document, hasPDF bool, p tasks.InvoiceReminder) (mailer.Message, error) {
	doc := document(inv, t)
	total := mailer.OneLine(due)
	issuer := cmpOr(mailer.OneLine(t.Name), t.Slug)
	customer := cmpOr(mailer.OneLine(inv.Customer.Name), "customer")
	number := mailer.OneLine(inv.Number)
	var text strings.Builder
	fmt.Fprintf(&text, "Dear %s,\n\n", customer)
	if doc.DueAt.IsZero() {
		// No due date (NULL): the app set the invoice overdue itself.
		fmt.Fprintf(&text, "invoice %s from %s is overdue.\n\n", number, issuer)
	} else {
		fmt.Fprintf(&text, "invoice %s from %s was due on %s and is overdue.\n\n", number, issuer, doc.DueAt.Format(time.DateOnly))
	}
	fmt.Fprintf(&text, "Amount due: %s\n\n", total)
	msg := mailer.Message{
		From:      h.MailFrom,
		To:        inv.Customer.Email,
		Subject:   fmt.Sprintf("Reminder: invoice %s is overdue", number),
		MessageID: reminderMessageID(t.ID, p.InvoiceID, p.Day, h.MailFrom),
	}

	if hasPDF && linesLeftOut(inv) {
		LoggerFromContext(ctx).WarnContext(ctx, "reminder without attachment: the invoice has more lines than PDF_MAX_LINES, or more bytes of them than PDF_MAX_LINE_BYTES",
			slog.Int64("invoice_id", p.InvoiceID), slog.Int("lines", inv.LineCount), slog.Int("max_lines", h.maxLines()),
			slog.Int64("line_bytes", inv.LineBytes), slog.Int64("max_line_bytes", h.maxLineBytes()))
		hasPDF = false
	}
	if hasPDF {
		key := rendered.StorageKey
		data, err := h.attachment(ctx, t.ID, p.InvoiceID, doc, rendered)
		switch {
		case errors.Is(err, errAttachmentTooLarge), errors.Is(err, pdf.ErrInvalidInvoice):
			// Retried it would be as large (or as unrenderable): the
			// reminder goes without it.
			LoggerFromContext(ctx).WarnContext(ctx, "reminder without attachment: pdf larger than an attachment may be, or not renderable",
				slog.Int64("invoice_id", p.InvoiceID), slog.String("storage_key", key), slog.String("error", err.Error()))
		case err != nil:
			return msg, err
		default:
			msg.Attachments = []mailer.Attachment{{
				Name: "invoice-" + fileSafe(number) + ".pdf", ContentType: "application/pdf", Data: data,
			}}
			text.WriteString("The invoice is attached.\n\n")
		}
	}
	text.WriteString("If you have already paid, please disregard this message.\n\n")
	fmt.Fprintf(&text, "%s\n", issuer)
	msg.Text = text.String()
	return msg, nil
}

// attachment returns the PDF of doc to attach to its reminder: the stored
// document (rendered, its invoice_documents row) when it was rendered
// from what doc holds now (pdf.InputsHash) and the file under its key is
// the one the row records (its SHA-256: a render whose transaction failed
// after its file was written leaves another version there), else doc rendered now, in
// memory (not stored: the invoice:pdf task owns the document store). A
// document rendered before the invoice was edited, or before it became
// overdue, would show another amount, or status, than the email's text.
// A stored document that cannot be read (missing from the store, not a
// regular file, a symbolic link the store refuses, an I/O error) is
// rendered for the email too, logged: the row proves the invoice renders,
// and failing the reminder until it is archived would never send it. A
// stored document over maxAttachmentBytes is errAttachmentTooLarge.
// A render over the attachment bound (or PDF_MAX_BYTES, PDF_MAX_PAGES) wraps
// pdf.ErrTooLarge, one the renderer refuses pdf.ErrInvalidInvoice.
func (h *Handlers) attachment(ctx context.Context, tenantID string, invoiceID int64, doc pdf.Invoice, rendered invoice.Document) ([]byte, error) {
	maxBytes := h.PDFMaxBytes
	if maxBytes <= 0 {
		maxBytes = pdf.DefaultMaxBytes
	}
	r := pdf.Renderer{MaxLines: h.PDFMaxLines, MaxLineBytes: h.PDFMaxLineBytes, MaxBytes: min(maxBytes, maxAttachmentBytes), MaxPages: h.PDFMaxPages}
	if rendered.InputsSHA256 != "" && rendered.InputsSHA256 == pdf.InputsHash(r, doc) {
		data, info, err := h.readDocument(ctx, tenantID, rendered.StorageKey)
		switch {
		case err == nil && info.SHA256 == rendered.SHA256 && info.Bytes == rendered.Bytes:
			return data, nil
		case errors.Is(err, errAttachmentTooLarge), err != nil && ctx.Err() != nil:
			return nil, err
		case err != nil:
			LoggerFromContext(ctx).WarnContext(ctx, "reminder attaches a pdf rendered for the email: the stored one cannot be read",
				slog.Int64("invoice_id", invoiceID), slog.String("storage_key", rendered.StorageKey), slog.String("error", err.Error()))
		}
		// Else another version under the key: a render whose transaction
		// failed after its file was written (as InvoicePDF's stored
		// checks). doc is rendered for the email instead.
	}
	var buf bytes.Buffer
	if _, err := r.Render(ctx, &buf, doc); err != nil {
		return nil, fmt.Errorf("render invoice %s for its reminder: %w", mailer.OneLine(doc.Number), err)
	}
	return buf.Bytes(), nil
}

// errAttachmentTooLarge: the stored document is larger than
// maxAttachmentBytes (PDF_MAX_BYTES may allow larger PDFs).
var errAttachmentTooLarge = errors.New("larger than an attachment may be")

// readDocument reads a stored document of at most maxAttachmentBytes and
// returns it with its size and SHA-256; errAttachmentTooLarge for a
// larger one.
func (h *Handlers) readDocument(ctx context.Context, tenantID, key string) ([]byte, storage.DocumentInfo, error) {
	rc, info, err := h.Documents.Open(ctx, tenantID, key)
	if err != nil {
		return nil, storage.DocumentInfo{}, fmt.Errorf("open %s: %w", key, err)
	}
	defer rc.Close()
	if info.Bytes > maxAttachmentBytes {
		return nil, storage.DocumentInfo{}, fmt.Errorf("read %s: %d bytes: %w (%d bytes)", key, info.Bytes, errAttachmentTooLarge, maxAttachmentBytes)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxAttachmentBytes+1))
	if err != nil {
		return nil, storage.DocumentInfo{}, fmt.Errorf("read %s: %w", key, err)
	}
	if len(data) > maxAttachmentBytes {
		return nil, storage.DocumentInfo{}, fmt.Errorf("read %s: %w (%d bytes)", key, errAttachmentTooLarge, maxAttachmentBytes)
	}
	return data, info, nil
}

// reminderMessageID is the deterministic Message-ID of one reminder, so a
// duplicate send (see InvoiceReminder) can be recognised by receivers. Its
// right part is the domain of from when that is printable ASCII (a
// Message-ID is ASCII, and the mailer refuses any other), else
// "tenantworker.invalid": an internationalized domain written as such
// (billing@müller.example, which MAIL_FROM accepts) must not make every
// reminder fail.
func reminderMessageID(tenantID string, invoiceID int64, day, from string) string {
	domain := "tenantworker.invalid"
	if a, err := mail.ParseAddress(from); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok && d != "" && msgIDDomain(d) {
			domain = d
		}
	}
	return fmt.Sprintf("<reminder-%s-%d-%s@%s>", tenantID, invoiceID, day, domain)
}

// msgIDDomain reports whether d can be the right part of a Message-ID as
// it is: printable ASCII without space, angle or square brackets.
func msgIDDomain(d string) bool {
	for i := 0; i < len(d); i++ {
		if c := d[i]; c <= ' ' || c > '~' || strings.IndexByte("<>[]", c) >= 0 {
			return false
		}
	}
	return true
}

// fileSafe keeps the characters of s that are safe in an attachment name:
// ASCII letters, digits, '-', '_' and '.', and the letters, digits and
// combining marks of any script ("Müller", "東京"); every other rune
// (a path separator, a quote, a format character) becomes one '_'. The
// mailer writes a name outside ASCII as RFC 2231 parameters beside an
// ASCII fallback.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		case r > unicode.MaxASCII && r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)):
			return r
		}
		return '_'
	}, s)
}

// cmpOr returns s, or def when s is blank.
func cmpOr(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

// maxLines is the renderer's line limit: PDF_MAX_LINES, or its default.
func (h *Handlers) maxLines() int { return pdf.Renderer{MaxLines: h.PDFMaxLines}.MaxLinesOrDefault() }

// maxLineBytes is the renderer's limit on the bytes of an invoice's line
// descriptions: PDF_MAX_LINE_BYTES, or its default.
func (h *Handlers) maxLineBytes() int64 {
	return pdf.Renderer{MaxLineBytes: h.PDFMaxLineBytes}.MaxLineBytesOrDefault()
}
