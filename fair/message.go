package fair

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Message is an asynq task message: what asynq stores in the "msg" field of
// a task's hash (asynq:{queue}:t:{id}) and decodes when a worker dequeues
// the task. The dispatcher writes admitted tasks into asynq's own keys in
// the same Lua script that takes them from a tenant's backlog, so it needs
// the message already encoded.
//
// The encoding is the protobuf TaskMessage of asynq v0.26
// (internal/proto/asynq.proto), written with protowire because asynq keeps
// its encoder internal. Only the fields a new, immediately processable task
// carries are written; TestMessageDecodesInAsynq checks the result with a
// real asynq server and inspector, so an asynq upgrade that changes the
// format fails that test.
type Message struct {
	ID      string
	Type    string
	Queue   string
	Payload []byte
	// Retry is the maximum number of retries.
	Retry int
	// Timeout bounds one attempt (whole seconds; asynq's resolution).
	Timeout time.Duration
	// Retention keeps a completed task visible this long (whole seconds).
	Retention time.Duration
	// Retried and LastErr are the retries asynq counted and the error of
	// the last failed attempt: zero for a new task, kept in the message of
	// a retry that was parked (and so in its tenant's backlog after).
	Retried int
	LastErr string
}

// Field numbers of asynq's TaskMessage.
const (
	fieldType      = 1
	fieldPayload   = 2
	fieldID        = 3
	fieldQueue     = 4
	fieldRetry     = 5
	fieldRetried   = 6
	fieldErrorMsg  = 7
	fieldTimeout   = 8
	fieldRetention = 12
)

// errBadMessage is wrapped by DecodeMessage's errors.
var errBadMessage = errors.New("invalid asynq task message")

// Encode returns m in asynq's wire format. A zero Timeout means asynq's
// default of 30 minutes, as asynq.Client does when neither a timeout nor a
// deadline is set.
func (m Message) Encode() []byte {
	b, _ := m.encode()
	return b
}

// encode is Encode, also returning the byte offset of the id field (its
// tag) in the message: the enqueue script makes a follow-up's message by
// replacing that field (followUpArg).
func (m Message) encode() ([]byte, int) {
	return m.appendTo(make([]byte, 0, 32+len(m.ID)+len(m.Type)+len(m.Queue)+len(m.Payload)))
}

// appendTo is encode, appending the message to b; the offset counts from
// the start of b.
func (m Message) appendTo(b []byte) ([]byte, int) {
	timeout := int64(m.Timeout / time.Second)
	if timeout <= 0 {
		timeout = int64((30 * time.Minute) / time.Second)
	}
	b = appendString(b, fieldType, m.Type)
	if len(m.Payload) > 0 {
		b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Payload)
	}
	idAt := len(b)
	b = appendString(b, fieldID, m.ID)
	b = appendString(b, fieldQueue, m.Queue)
	b = appendVarint(b, fieldRetry, uint64(int32(m.Retry)))
	b = appendVarint(b, fieldRetried, uint64(int32(m.Retried)))
	b = appendString(b, fieldErrorMsg, m.LastErr)
	b = appendVarint(b, fieldTimeout, uint64(timeout))
	b = appendVarint(b, fieldRetention, uint64(int64(m.Retention/time.Second)))
	return b, idAt
}

// followUpArg is the enqueue script's argument for f, the follow-up of the
// task whose message is msg (its id, id, at byte offset idAt): f encoded,
// or, when f's message is msg with f's id in place of id (the follow-up
// of a render or a reminder: almost never used, as it is enqueued only
// while the task's own id runs), "#" and idAt, from which the script
// builds f's message itself, byte for byte what f.Encode() returns. A
// bulk enqueue then carries one message per task instead of two. The
// comparison is of the encodings, so a field added to Message later
// cannot make the script build a message that differs from f's.
//
// scratch is a buffer for f's encoding that the caller reuses from one
// task to the next (nil: a new one); followUpArg returns it, grown, as its
// second result. What it returns as the argument never aliases scratch.
func followUpArg(scratch, msg []byte, idAt int, id string, f Message) (any, []byte) {
	enc, at := f.appendTo(scratch[:0])
	if id == "" || f.ID == "" {
		return bytes.Clone(enc), enc
	}
	own := fieldSize(fieldID, id)
	// f's encoding is msg with f's id field in place of id's: the same
	// bytes before the field, f's id field at the same offset (appendTo
	// wrote it there), and the same bytes after it.
	if at != idAt || idAt+own > len(msg) || !bytes.Equal(enc[:idAt], msg[:idAt]) ||
		!bytes.Equal(enc[idAt+fieldSize(fieldID, f.ID):], msg[idAt+own:]) {
		return bytes.Clone(enc), enc
	}
	return followUpRef(idAt), enc
}

// followUpRefs holds the "#" references of followUpArg for the offsets a
// message's id field usually has, made once.
var followUpRefs = func() (refs [512]string) {
	for i := range refs {
		refs[i] = "#" + strconv.Itoa(i)
	}
	return refs
}()

// followUpRef returns "#" and idAt.
func followUpRef(idAt int) string {
	if idAt >= 0 && idAt < len(followUpRefs) {
		return followUpRefs[idAt]
	}
	return "#" + strconv.Itoa(idAt)
}

// fieldSize is the encoded size of string field num holding s, as
// appendString writes it (nothing for "").
func fieldSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// DecodeMessage reads the fields of Message from an asynq task message and
// skips the others (timestamps, headers).
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, fmt.Errorf("%w: %w", errBadMessage, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == fieldType || num == fieldPayload || num == fieldID || num == fieldQueue || num == fieldErrorMsg):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return m, fmt.Errorf("%w: field %d: %w", errBadMessage, num, protowire.ParseError(n))
			}
			switch num {
			case fieldType:
				m.Type = string(v)
			case fieldPayload:
				m.Payload = append([]byte(nil), v...)
			case fieldID:
				m.ID = string(v)
			case fieldQueue:
				m.Queue = string(v)
			case fieldErrorMsg:
				m.LastErr = string(v)
			}
			b = b[n:]
		case typ == protowire.VarintType && (num == fieldRetry || num == fieldRetried || num == fieldTimeout || num == fieldRetention):
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return m, fmt.Errorf("%w: field %d: %w", errBadMessage, num, protowire.ParseError(n))
			}
			switch num {
			case fieldRetry:
				m.Retry = int(int32(v))
			case fieldRetried:
				m.Retried = int(int32(v))
			case fieldTimeout:
				m.Timeout = time.Duration(v) * time.Second
			case fieldRetention:
				m.Retention = time.Duration(v) * time.Second
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return m, fmt.Errorf("%w: field %d: %w", errBadMessage, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return m, nil
}
