// Package childproc runs server processes as children that cannot outlive
// their parent.
//
// Each process runs in its own process group, so a Ctrl-C on the terminal
// or a signal to the parent's group does not reach it, and gets SIGKILL
// when the process that started it dies (Linux parent-death signal). Stop
// sends a gentle signal to the whole group, then SIGKILL after a grace
// period.
//
// FreePort and ReadLogSince are for the callers that start servers on
// loopback ports and report their logs when a start fails.
package childproc
