package fair_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
)

// scriptArgs is a go-redis hook keeping the arguments of the scripts a
// client runs (EVALSHA, and EVAL after NOSCRIPT).
type scriptArgs struct {
	mu   sync.Mutex
	args [][]any
}

func (s *scriptArgs) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *scriptArgs) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		s.keep(cmd)
		return next(ctx, cmd)
	}
}

func (s *scriptArgs) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			s.keep(cmd)
		}
		return next(ctx, cmds)
	}
}

func (s *scriptArgs) keep(cmd redis.Cmder) {
	if name := strings.ToLower(cmd.Name()); name == "evalsha" || name == "eval" {
		s.mu.Lock()
		s.args = append(s.args, cmd.Args())
		s.mu.Unlock()
	}
}

// sent reports whether any script call carried b as an argument.
func (s *scriptArgs) sent(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, args := range s.args {
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				if bytes.Equal(v, b) {
					return true
				}
			case string:
				if v == string(b) {
					return true
				}
			}
		}
	}
	return false
}

// TestFollowUpMessageBuiltByTheScript: a task's follow-up that differs
// from the task only in its id (what package tasks enqueues for every
// render: a bulk request of 100 invoices carried 100 follow-up messages
// that are almost never used) is not sent; the enqueue script builds it
// from the task's message when the task's own id runs, and what asynq
// gets is byte for byte the follow-up's Encode (and the run token
// admission appends to every message): with and without a
// payload, and with ids whose length takes one and two bytes of varint.
// A follow-up that differs in anything else is sent in full and stored
// as sent.
func TestFollowUpMessageBuiltByTheScript(t *testing.T) {
	t.Parallel()
	b := setup(t, 100)
	seen := &scriptArgs{}
	b.rdb.AddHook(seen)
	ctx := context.Background()
	const tenant = "tn_followmsg"
	long := strings.Repeat("x", 200)
	cases := []struct {
		name      string
		id        string
		payload   []byte
		retry     int
		derivable bool
	}{
		{"short id", "invoice:pdf:" + tenant + ":1", []byte(`{"invoice_id":1}`), 0, true},
		{"no payload", "invoice:pdf:" + tenant + ":2", nil, 0, true},
		{"id over 127 bytes", "invoice:pdf:" + tenant + ":" + long, []byte(`{"invoice_id":3}`), 0, true},
		{"payload over 127 bytes", "invoice:pdf:" + tenant + ":4", []byte(`{"x":"` + long + `"}`), 0, true},
		{"other retry", "invoice:pdf:" + tenant + ":5", []byte(`{"invoice_id":5}`), 7, false},
	}
	for _, c := range cases {
		m := fair.Message{ID: c.id, Type: "invoice:pdf", Queue: q, Payload: c.payload, Retry: 3, Timeout: 120e9, Retention: 3600e9}
		f := m
		f.ID = c.id + ":again"
		if !c.derivable {
			f.Retry = c.retry
		}
		// The task's own id runs: asynq's hash says so.
		if err := b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+c.id, "state", "active", "msg", m.Encode()).Err(); err != nil {
			t.Fatal(err)
		}
		res, err := b.d.Enqueue(ctx, tenant, fair.Policy{Weight: 1}, []fair.Task{{Message: m, ReplaceFinished: true, FollowUp: &f}})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(res) != 1 || !res[0].FollowUp || res[0].Existing || res[0].ID != f.ID {
			t.Fatalf("%s: result %+v, want the new follow-up %s", c.name, res, f.ID)
		}
		want := f.Encode()
		if sent := seen.sent(want); sent == c.derivable {
			t.Errorf("%s: follow-up message sent to Redis: %t, want %t", c.name, sent, !c.derivable)
		}
		got, err := b.rdb.HGet(ctx, "asynq:{"+q+"}:t:"+f.ID, "msg").Bytes()
		if err != nil {
			t.Fatalf("%s: follow-up not admitted into asynq: %v", c.name, err)
		}
		// Admission appends the run's token (a header) to the message.
		if !bytes.HasPrefix(got, want) {
			dm, derr := fair.DecodeMessage(got)
			t.Errorf("%s: follow-up's message in asynq\n got %q (%+v, %v)\nwant %q", c.name, got, dm, derr, want)
		}
	}
}

// TestFollowUpMessagesOfOneBatch: the follow-ups of one enqueue call are
// encoded one after the other into one reused buffer; each one sent in
// full (here they differ from their tasks in their retry count) reaches
// asynq as its own Encode, not as the buffer's last content, and the
// derivable ones among them are built by the script as before.
func TestFollowUpMessagesOfOneBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, 100)
	ctx := context.Background()
	const tenant = "tn_followbatch"
	var batch []fair.Task
	var follows []fair.Message
	for i, retry := range []int{7, 3, 9, 3, 11} { // 3: the task's own, derivable
		id := fmt.Sprintf("invoice:pdf:%s:%d", tenant, i)
		m := fair.Message{ID: id, Type: "invoice:pdf", Queue: q, Payload: []byte(fmt.Sprintf(`{"invoice_id":%d}`, i)), Retry: 3, Timeout: 120e9, Retention: 3600e9}
		f := m
		f.ID, f.Retry = id+":again", retry
		if err := b.rdb.HSet(ctx, "asynq:{"+q+"}:t:"+id, "state", "active", "msg", m.Encode()).Err(); err != nil {
			t.Fatal(err)
		}
		follows = append(follows, f)
		batch = append(batch, fair.Task{Message: m, ReplaceFinished: true, FollowUp: &follows[len(follows)-1]})
	}
	res, err := b.d.Enqueue(ctx, tenant, fair.Policy{Weight: 1}, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range follows {
		if !res[i].FollowUp || res[i].ID != f.ID {
			t.Fatalf("result %d: %+v, want the new follow-up %s", i, res[i], f.ID)
		}
		got, err := b.rdb.HGet(ctx, "asynq:{"+q+"}:t:"+f.ID, "msg").Bytes()
		if err != nil {
			t.Fatalf("follow-up %s not admitted into asynq: %v", f.ID, err)
		}
		if want := f.Encode(); !bytes.HasPrefix(got, want) {
			dm, derr := fair.DecodeMessage(got)
			t.Errorf("follow-up %s's message in asynq\n got %q (%+v, %v)\nwant %q", f.ID, got, dm, derr, want)
		}
	}
}
