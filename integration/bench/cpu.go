package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/invoicing/tenantworker/internal/procstat"
)

// cpuProbe reads the CPU time spent by the bench process, the Redis server
// and the PostgreSQL server (the postmaster and all its backends), so a
// scenario can say where the CPU went per task. (Per process, not from
// /proc/stat: in this VM the machine-wide counters lost about 15% of the
// busy time under load.)
// A zero pid means that server is not local (REDIS_URL, DATABASE_URL): it
// is not measured.
type cpuProbe struct {
	redisPID      int
	postmasterPID int
}

// cpuSample is one reading of a cpuProbe.
type cpuSample struct {
	at         time.Time
	self       time.Duration // this process, all threads (getrusage)
	redis      time.Duration
	postgres   time.Duration // postmaster, its live children, and its reaped ones
	redisOK    bool
	postgresOK bool
}

// cpuUse is the CPU spent between two samples.
type cpuUse struct {
	wall                            time.Duration
	self, redis, postgres           time.Duration
	redisMeasured, postgresMeasured bool
}

// newCPUProbe finds the servers' processes: Redis by its INFO process_id,
// PostgreSQL as the parent of a backend of pool. Only servers this bench
// started are probed; /proc must show them (same machine, same pid
// namespace).
func (b *bench) newCPUProbe(ctx context.Context, c *coreDB) (*cpuProbe, error) {
	p := &cpuProbe{}
	if b.env.redis != nil {
		info, err := b.env.rdb.Info(ctx, "server").Result()
		if err != nil {
			return nil, fmt.Errorf("redis INFO: %w", err)
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
				if p.redisPID, err = strconv.Atoi(v); err != nil {
					return nil, fmt.Errorf("redis process_id %q: %w", v, err)
				}
			}
		}
		if p.redisPID == 0 {
			return nil, errors.New("redis INFO has no process_id")
		}
	}
	if b.env.pg != nil {
		var backend int
		if err := c.pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
			return nil, fmt.Errorf("postgres backend pid: %w", err)
		}
		st, err := procstat.Read(backend)
		if err != nil {
			return nil, fmt.Errorf("postgres backend %d: %w", backend, err)
		}
		p.postmasterPID = st.PPID
	}
	return p, nil
}

// sample reads the counters now.
func (p *cpuProbe) sample() (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, fmt.Errorf("getrusage: %w", err)
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if p.redisPID != 0 {
		st, err := procstat.Read(p.redisPID)
		if err != nil {
			return s, fmt.Errorf("redis-server: %w", err)
		}
		s.redis, s.redisOK = st.CPU, true
	}
	if p.postmasterPID != 0 {
		cpu, err := procstat.TreeCPU(p.postmasterPID)
		if err != nil {
			return s, fmt.Errorf("postgres: %w", err)
		}
		s.postgres, s.postgresOK = cpu, true
	}
	return s, nil
}

// since returns what was spent from an earlier sample to s.
func (s cpuSample) since(from cpuSample) cpuUse {
	return cpuUse{
		wall:             s.at.Sub(from.at),
		self:             s.self - from.self,
		redis:            s.redis - from.redis,
		postgres:         s.postgres - from.postgres,
		redisMeasured:    s.redisOK && from.redisOK,
		postgresMeasured: s.postgresOK && from.postgresOK,
	}
}

// add sums two uses (rounds of one variant).
func (u cpuUse) add(v cpuUse) cpuUse {
	u.wall += v.wall
	u.self += v.self
	u.redis += v.redis
	u.postgres += v.postgres
	u.redisMeasured, u.postgresMeasured = v.redisMeasured, v.postgresMeasured
	return u
}

// perTask returns d per task in microseconds.
func perTask(d time.Duration, tasks int) float64 {
	if tasks == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(tasks)
}

// parts names the processes total sums: "bench", with " + redis" and
// " + postgres" for the servers that were measured.
func (u cpuUse) parts() string {
	p := "bench"
	if u.redisMeasured {
		p += " + redis"
	}
	if u.postgresMeasured {
		p += " + postgres"
	}
	return p
}

// total is the CPU of every measured process.
func (u cpuUse) total() time.Duration { return u.self + u.redis + u.postgres }

// busyShare is the measured processes' share of the machine's CPUs over
// the wall time of the use.
func (u cpuUse) busyShare() float64 {
	if u.wall <= 0 {
		return 0
	}
	return float64(u.total()) / (float64(u.wall) * float64(runtime.NumCPU()))
}

// summary is one line: CPU per task by process, and their share of the
// machine's CPUs.
func (u cpuUse) summary(tasks int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "bench process %.0f µs", perTask(u.self, tasks))
	if u.redisMeasured {
		fmt.Fprintf(&b, ", redis-server %.0f µs", perTask(u.redis, tasks))
	}
	if u.postgresMeasured {
		fmt.Fprintf(&b, ", postgres %.0f µs", perTask(u.postgres, tasks))
	}
	fmt.Fprintf(&b, " per task (%.0f%% of %d CPUs busy)", 100*u.busyShare(), runtime.NumCPU())
	return b.String()
}
