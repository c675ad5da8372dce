package tasks

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestTakeOfATenantWithoutRecordsLooksUpNoID: every enqueue of a task
// that may replace a finished one takes the old records of its ids first
// (takeScript), and most tenants have none: a take then answers from one
// look at the tenant's records, without a look-up per id (a bulk render
// of 100 invoices ran 100 HGETs inside Redis for nothing). With records,
// it still drops those of its ids and answers them.
func TestTakeOfATenantWithoutRecordsLooksUpNoID(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	records := NewTaskRecords(rdb, TaskRecordsOptions{})
	const tenant = "tn_l6to436s7a7gm26zfzxqh6n75e"
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("invoice:pdf:%s:%d", tenant, i+1)
	}
	calls := func(cmd string) int {
		t.Helper()
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	before := calls("hget")
	taken, err := records.take(ctx, tenant, ids...)
	if err != nil || len(taken) != 0 {
		t.Fatalf("take without records = %v, %v", taken, err)
	}
	if n := calls("hget") - before; n != 0 {
		t.Errorf("a take of %d ids of a tenant without records ran %d HGETs, want none", len(ids), n)
	}
	// With a record of one id, the take still drops and answers it.
	if err := records.Put(ctx, tenant, TaskRecord{TaskID: ids[41], Type: TypeInvoicePDF, Reason: "failed"}); err != nil {
		t.Fatal(err)
	}
	taken, err = records.take(ctx, tenant, ids...)
	if err != nil || len(taken) != 3 || taken[0] != ids[41] {
		t.Fatalf("take with one record = %v, %v; want that record", taken, err)
	}
	if got, err := records.Get(ctx, tenant, ids[41]); err == nil {
		t.Errorf("record of %s still there after the take: %+v", ids[41], got)
	}
}
