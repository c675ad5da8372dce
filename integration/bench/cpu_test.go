package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses, as proc(5) allows.
	line := "4242 (post (gres) x) S 77 4242 4242 0 -1 4194560 100 0 0 0 250 31 7 3 20 0 1 0 123 4096 10 18446744073709551615\n"
	st, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 77 {
		t.Errorf("ppid = %d, want 77", st.ppid)
	}
	if want := 281 * (time.Second / userHZ); st.cpu != want {
		t.Errorf("cpu = %s, want %s", st.cpu, want)
	}
	if want := 10 * (time.Second / userHZ); st.reaped != want {
		t.Errorf("reaped = %s, want %s", st.reaped, want)
	}
	for _, bad := range []string{"", "12 (x S 1", "12 (x) S 1 2 3", "12 (x) S p 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

func TestReadProcStatSelf(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() {
		t.Errorf("ppid = %d, want %d", st.ppid, os.Getppid())
	}
}

// TestTreeCPUCountsChildren checks that a child's CPU is counted while it
// runs and after it has exited and been reaped, as PostgreSQL's backends
// are under the postmaster.
func TestTreeCPUCountsChildren(t *testing.T) {
	before, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if child < 50*time.Millisecond {
		t.Fatalf("the child used only %s of CPU; the loop is too short to measure", child)
	}
	after, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in ticks of 10 ms, rounded down per process.
	if got := after - before; got < child-2*(time.Second/userHZ) {
		t.Errorf("tree CPU grew by %s, the reaped child alone used %s", got, child)
	}
}
