package procstat

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	// A command name with spaces and parentheses, as proc(5) allows.
	line := "4242 (post (gres) x) S 77 4242 4242 0 -1 4194560 100 0 0 0 250 31 7 3 20 0 1 0 123 4096 10 18446744073709551615\n"
	st, err := Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != 77 {
		t.Errorf("ppid = %d, want 77", st.PPID)
	}
	if want := 281 * (time.Second / UserHZ); st.CPU != want {
		t.Errorf("cpu = %s, want %s", st.CPU, want)
	}
	if want := 10 * (time.Second / UserHZ); st.Reaped != want {
		t.Errorf("reaped = %s, want %s", st.Reaped, want)
	}
	for _, bad := range []string{"", "12 (x S 1", "12 (x) S 1 2 3", "12 (x) S p 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestReadSelf(t *testing.T) {
	st, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getppid() {
		t.Errorf("ppid = %d, want %d", st.PPID, os.Getppid())
	}
}

// TestTreeCPUCountsChildren checks that a child's CPU is counted while it
// runs and after it has exited and been reaped, as PostgreSQL's backends
// are under the postmaster.
func TestTreeCPUCountsChildren(t *testing.T) {
	before, err := TreeCPU(os.Getpid())
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
	after, err := TreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in ticks of 10 ms, rounded down per process.
	if got := after - before; got < child-2*(time.Second/UserHZ) {
		t.Errorf("tree CPU grew by %s, the reaped child alone used %s", got, child)
	}
}

func TestCPU(t *testing.T) {
	self, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	both, err := CPU([]int{os.Getpid(), os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if both < 2*self.CPU {
		t.Errorf("CPU of this process twice = %s, less than twice %s", both, self.CPU)
	}
	if _, err := CPU([]int{os.Getpid(), -1}); err == nil {
		t.Error("CPU of a process that does not exist succeeded")
	}
}

func TestParseMachine(t *testing.T) {
	data := []byte("cpu  100 5 40 800 20 3 2 7 0 0\ncpu0 50 2 20 400 10 1 1 3 0 0\nintr 12345\n")
	m, err := ParseMachine(data)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Second / UserHZ
	want := Machine{User: 105 * tick, Kernel: 45 * tick, Idle: 800 * tick, IOWait: 20 * tick, Steal: 7 * tick}
	if m != want {
		t.Errorf("ParseMachine = %+v, want %+v", m, want)
	}
	if got := m.Total(); got != 977*tick {
		t.Errorf("Total = %v, want %v", got, 977*tick)
	}
	// An old kernel's line stops after iowait.
	if m, err := ParseMachine([]byte("cpu 1 2 3 4 5\n")); err != nil || m.User != 3*tick || m.IOWait != 5*tick || m.Steal != 0 {
		t.Errorf("short line: %+v, %v", m, err)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 x 3 4\n", "cpu 1 2\n"} {
		if _, err := ParseMachine([]byte(bad)); err == nil {
			t.Errorf("ParseMachine(%q): no error", bad)
		}
	}
}

func TestReadMachineAdvances(t *testing.T) {
	a, err := ReadMachine()
	if err != nil {
		t.Fatalf("read /proc/stat: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := ReadMachine()
		if err != nil {
			t.Fatal(err)
		}
		if d := b.Sub(a); d.Total() > 0 {
			// proc(5): iowait (and on some kernels idle) may go back.
			if d.User < 0 || d.Kernel < 0 {
				t.Fatalf("user or kernel time went back: %+v", d)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("/proc/stat's times did not advance in 2 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
