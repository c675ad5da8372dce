package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// RecordRecoveredArchives returns a go-redis hook to add to the asynq
// server's Redis client (AddHook, before the server starts) that writes
// the tenant's record of a task asynq's recoverer archived (records.go):
// a task whose lease expired on its last allowed attempt (its worker
// killed, or unable to reach Redis while it ran it). asynq's recoverer
// archives such a task itself, without the server's error handler, which
// writes the record of every other archived task; without this hook its
// tenant would have none, and once asynq's shared archive dropped the task
// (10,000 per queue) the tenant would no longer find it. The hook
// recognizes asynq's archive script by its keys, and the recoverer's call
// by the error it archives with (asynq.ErrLeaseExpired); once the script
// succeeded it logs the archive at error level and writes the record,
// unless catalog says the tenant is gone or being deleted (as the error
// handler does not record such a task). A nil records writes nothing.
func RecordRecoveredArchives(records *tasks.TaskRecords, catalog storage.TenantStore, logger *slog.Logger) redis.Hook {
	if logger == nil {
		logger = slog.Default()
	}
	return recoveredHook{records: records, catalog: catalog, logger: logger}
}

type recoveredHook struct {
	records *tasks.TaskRecords
	catalog storage.TenantStore
	logger  *slog.Logger
}

func (h recoveredHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h recoveredHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h recoveredHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && h.records != nil {
			if a, ok := recoveredArchive(cmd.Args()); ok {
				h.record(ctx, a)
			}
		}
		return err
	}
}

// archivedTask is what an archive of asynq's recoverer names of its task.
type archivedTask struct {
	id, queue, typ string
	payload        []byte
	retried        int
}

// recoveredArchive reports whether args are a call of asynq's archive
// script (KEYS: the task's hash, active, lease, archived and five more of
// one queue; ARGV[2]: the task's message) that archives a task for an
// expired lease, and returns the task.
func recoveredArchive(args []any) (archivedTask, bool) {
	const nkeys = 9
	if len(args) < 3+nkeys+2 {
		return archivedTask{}, false
	}
	name, _ := args[0].(string)
	if !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return archivedTask{}, false
	}
	switch n := args[2].(type) {
	case int:
		if n != nkeys {
			return archivedTask{}, false
		}
	case int64:
		if n != nkeys {
			return archivedTask{}, false
		}
	default:
		return archivedTask{}, false
	}
	taskKey, _ := args[3].(string)
	archivedKey, _ := args[6].(string)
	queue, ok := strings.CutPrefix(archivedKey, "asynq:{")
	if !ok {
		return archivedTask{}, false
	}
	if queue, ok = strings.CutSuffix(queue, "}:archived"); !ok || !strings.HasPrefix(taskKey, "asynq:{"+queue+"}:t:") {
		return archivedTask{}, false
	}
	var msg []byte
	switch m := args[3+nkeys+1].(type) {
	case []byte:
		msg = m
	case string:
		msg = []byte(m)
	default:
		return archivedTask{}, false
	}
	a := archivedTask{queue: queue}
	var errMsg string
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return archivedTask{}, false
		}
		msg = msg[n:]
		switch {
		case typ == protowire.BytesType && (num == 1 || num == 2 || num == 3 || num == 7):
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return archivedTask{}, false
			}
			switch num {
			case 1:
				a.typ = string(v)
			case 2:
				a.payload = v
			case 3:
				a.id = string(v)
			case 7:
				errMsg = string(v)
			}
			msg = msg[m:]
		case typ == protowire.VarintType && num == 6:
			v, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return archivedTask{}, false
			}
			a.retried = int(int32(v))
			msg = msg[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, msg)
			if m < 0 {
				return archivedTask{}, false
			}
			msg = msg[m:]
		}
	}
	return a, errMsg == asynq.ErrLeaseExpired.Error() && a.id != ""
}

// record logs the archive of a and writes its tenant's record.
func (h recoveredHook) record(ctx context.Context, a archivedTask) {
	env := openEnvelope(asynq.NewTask(a.typ, a.payload))
	attrs := []any{slog.String("task_id", a.id), slog.String("task_type", a.typ)}
	if !env.System {
		attrs = append(attrs, slog.String("tenant_id", env.TenantID))
	}
	h.logger.ErrorContext(ctx, "task archived: its lease expired on its last attempt (its worker was killed or could not reach Redis)",
		append(attrs, slog.String("queue", a.queue), slog.Int("retried", a.retried))...)
	if env.System || env.TenantID == "" {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordArchiveTimeout)
	defer cancel()
	if h.catalog != nil {
		t, err := h.catalog.TenantByID(rctx, env.TenantID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && t.Status == tenantctx.StatusDeleting) {
			return // no record of a task of a tenant gone or going (recordArchive)
		}
	}
	rec := tasks.TaskRecord{TaskID: a.id, Type: a.typ, Queue: a.queue, Retried: a.retried, Reason: PublicReason(asynq.ErrLeaseExpired)}
	if err := h.records.Put(rctx, env.TenantID, rec); err != nil {
		h.logger.WarnContext(ctx, "record archived task", append(attrs, slog.String("error", err.Error()))...)
	}
}
