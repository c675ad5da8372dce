package tasks

import (
	"testing"
)

// TestTakeAnswersOnlyItsOwnRecords: each take of a tenant's records keeps
// its copy under a key of its own (a token per call), so a second take
// within the copy's minute answers only what it dropped. A copy shared by
// the tenant's takes would hand a refused enqueue the records an accepted
// one took meanwhile, and its restore would put back the archived record
// of a task enqueued anew: GET /v1/tasks/{id} would say "archived" with
// the old reason once asynq drops the new task.
func TestTakeAnswersOnlyItsOwnRecords(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	records := NewTaskRecords(rdb, TaskRecordsOptions{})
	const tenant = "tn_l6to436s7a7gm26zfzxqh6n75e"
	for _, id := range []string{"invoice:pdf:" + tenant + ":1", "invoice:pdf:" + tenant + ":2"} {
		if err := records.Put(ctx, tenant, TaskRecord{TaskID: id, Type: TypeInvoicePDF, Reason: "failed"}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(taken takenRecords) []string {
		var out []string
		for i := 0; i+2 < len(taken); i += 3 {
			id, _ := taken[i].(string)
			out = append(out, id)
		}
		return out
	}
	first, err := records.take(ctx, tenant, "invoice:pdf:"+tenant+":1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := records.take(ctx, tenant, "invoice:pdf:"+tenant+":2")
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(first); len(got) != 1 || got[0] != "invoice:pdf:"+tenant+":1" {
		t.Errorf("first take = %q, want its own record", got)
	}
	if got := ids(second); len(got) != 1 || got[0] != "invoice:pdf:"+tenant+":2" {
		t.Errorf("second take = %q, want its own record only", got)
	}
}
