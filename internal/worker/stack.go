package worker

// taskStackSize is the goroutine stack a task attempt runs on: asynq starts
// every attempt on a goroutine of its own, whose stack starts at 8 KiB, and
// an invoice:pdf attempt (the chain, the handler's transaction, fpdf, the
// document write, go-redis and pgx below them) needs 32 KiB. Grown as it
// goes, the stack doubles twice, and the second copy moves the whole chain
// deep in the handler: the runtime rewrites every frame it copies (about 6%
// of the worker's CPU in a PDF burst, docs/performance.md). growTaskStack
// takes it in one step at the top of the chain, while the stack holds
// asynq's few frames.
const taskStackSize = 32 << 10

// growFrame is growTaskStack's frame: more than half of taskStackSize, so
// that the runtime, which doubles a stack until the frame that overflowed
// it fits, goes from 8 (or 16) KiB to taskStackSize in one copy, and less
// than taskStackSize minus asynq's frames above it, so that it does not go
// one size further.
const growFrame = taskStackSize/2 + 4<<10

// growIndex is read, never written, by growTaskStack: an index the
// compiler cannot know, so that it keeps the frame's array.
var growIndex = 1

// growTaskStack grows the calling goroutine's stack to taskStackSize (at
// most one stack copy, of the shallow stack of the chain's first
// middleware; none when it is that large already). It costs a clear of
// growFrame bytes. Its result means nothing.
//
//go:noinline
func growTaskStack() byte {
	var frame [growFrame]byte
	frame[growIndex] = 1
	return frame[len(frame)-1-growIndex]
}
