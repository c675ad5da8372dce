package tasks_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tasks"
)

// Enqueue an invoice:pdf task through the one Enqueuer. A second request for
// the same invoice while the first is pending returns the same task.
func ExampleEnqueuer_Enqueue() {
	redis := miniredis.NewMiniRedis() // any Redis; miniredis keeps the example self-contained
	if err := redis.Start(); err != nil {
		panic(err)
	}
	defer redis.Close()
	conn := asynq.RedisClientOpt{Addr: redis.Addr()}
	client, inspector := asynq.NewClient(conn), asynq.NewInspector(conn)
	defer client.Close()
	defer inspector.Close()

	enq := tasks.NewEnqueuer(client, inspector, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	p := tasks.InvoicePDF{TenantID: "tn_acme", InvoiceID: 42}

	first, err := enq.Enqueue(ctx, p)
	if err != nil {
		panic(err)
	}
	fmt.Println(first.Info.ID, first.Info.Queue, first.Info.State, first.Existing)

	again, err := enq.Enqueue(ctx, p)
	if err != nil {
		panic(err)
	}
	fmt.Println(again.Info.ID, again.Existing)
	// Output:
	// invoice:pdf:tn_acme:42 default pending false
	// invoice:pdf:tn_acme:42 true
}
