package tasks

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestEnqueueReturnsWhenCtxEnds: while Redis answers nothing (its process
// stopped), an enqueue returns as soon as its ctx ends, with ctx's error,
// with fair dispatch and without; the enqueue itself goes on, Wait says so
// until Redis answers again, and then the task exists (a retry finds it).
// The enqueues running at once are bounded: with every one taken, a
// further enqueue sends nothing and returns at its ctx's end.
func TestEnqueueReturnsWhenCtxEnds(t *testing.T) {
	t.Parallel()
	for _, withFair := range []bool{false, true} {
		t.Run("fair="+strconv.FormatBool(withFair), func(t *testing.T) {
			t.Parallel()
			r := newOutageRig(t, withFair, redis.Options{ReadTimeout: -1})
			enq, tenantID := r.enq, r.tenantID
			enq.enqueues = make(chan struct{}, 2)
			ctx := testContext(t)
			// The tenant's look-up answered once (the catalog keeps it).
			if _, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tenantID, InvoiceID: 1}); err != nil {
				t.Fatal(err)
			}
			// Every enqueue taken: a further one starts nothing.
			r.beyondBound(t, enq.enqueues, "enqueue", func(ctx context.Context) error {
				_, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tenantID, InvoiceID: 2})
				return err
			})

			resume := testenv.StopRedis(t, r.rdb)
			probe := testenv.Pinged(t, r.srv.Addr())
			dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err := enq.EnqueueMany(dctx, tenantID, []Payload{InvoicePDF{TenantID: tenantID, InvoiceID: 2}, InvoicePDF{TenantID: tenantID, InvoiceID: 3}})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("enqueue past its deadline: %v, want context.DeadlineExceeded", err)
			}
			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			err = enq.Wait(wctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait while the enqueue waits for Redis: %v, want context.DeadlineExceeded", err)
			}
			select {
			case <-probe:
				t.Fatal("Redis answered before the enqueue returned: it was not stopped")
			default:
			}

			resume()
			<-probe
			wctx, cancel = context.WithTimeout(ctx, time.Minute)
			err = enq.Wait(wctx)
			cancel()
			if err != nil {
				t.Fatalf("Wait once Redis answers again: %v", err)
			}
			if applied, failed := enq.EndedLate(); applied != 1 || failed != 0 {
				t.Fatalf("EndedLate %d applied, %d failed; want the one cut-off call applied", applied, failed)
			}
			for _, id := range []int64{2, 3} {
				res, err := enq.Enqueue(ctx, InvoicePDF{TenantID: tenantID, InvoiceID: id})
				if err != nil || !res.Existing {
					t.Fatalf("enqueue of invoice %d again: %+v, %v; want the task the cut-off enqueue made", id, res, err)
				}
			}
		})
	}
}
