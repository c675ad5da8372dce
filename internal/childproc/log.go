package childproc

import (
	"fmt"
	"os"
)

// maxLogTail is how much of a log ReadLogSince returns.
const maxLogTail = 8 << 10

// ReadLogSince returns the last 8 KiB of the log at path written after the
// log had the size in before (nil: the whole log), for failure messages. A
// log that cannot be read yields a note saying so.
func ReadLogSince(path string, before os.FileInfo) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read log %s: %v)", path, err)
	}
	if before != nil && before.Size() <= int64(len(b)) {
		b = b[before.Size():]
	}
	if len(b) > maxLogTail {
		return "...\n" + string(b[len(b)-maxLogTail:])
	}
	return string(b)
}
