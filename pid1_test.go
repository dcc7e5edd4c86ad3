package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// pid1Orphan starts a process that outlives its worker, then overruns the
// pool's TaskTimeout, so that its worker is killed and the process, killed
// too, is reparented to PID 1 as a zombie.
var pid1Orphan = mp.Register("test.pid1.orphan", func(ctx context.Context, _ int) (int, error) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	time.Sleep(time.Hour)
	return 0, nil
})

// TestHelperPID1 is not a test: TestPID1ReapsOrphans runs it as PID 1 of a
// new PID namespace. It times out tasks whose subprocesses are orphaned,
// then prints how many zombies are left.
func TestHelperPID1(t *testing.T) {
	if os.Getenv(helperEnv) != "pid1" {
		t.Skip("helper process for TestPID1ReapsOrphans")
	}
	if os.Getpid() != 1 {
		fmt.Println("error: not PID 1 but", os.Getpid())
		os.Exit(1)
	}
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 1, TaskTimeout: 100 * time.Millisecond})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for range 3 {
		if _, err := mp.Apply(ctx, p, pid1Orphan, 0); !errors.Is(err, mp.ErrTaskTimeout) {
			fmt.Println("error: got", err)
			os.Exit(1)
		}
	}
	// Reaping follows SIGCHLD: wait, bounded, for the zombies to go.
	deadline := time.Now().Add(5 * time.Second)
	for {
		zombies := zombiesHere()
		if len(zombies) == 0 || time.Now().After(deadline) {
			fmt.Println("zombies", len(zombies), zombies)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Close()
	os.Exit(0)
}

// zombiesHere lists the zombies in this PID namespace.
func zombiesHere() []int {
	entries, _ := os.ReadDir("/proc")
	var zombies []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, state, ok := procStat(pid); ok && state == "Z" {
			zombies = append(zombies, pid)
		}
	}
	return zombies
}

func TestPID1ReapsOrphans(t *testing.T) {
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare command to make a PID namespace")
	}
	// Does this machine let us make one? (It takes root, or user namespaces.)
	if err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").Run(); err != nil {
		t.Skipf("cannot make a PID namespace here: %v", err)
	}
	ctx := bounded(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, unshare, "--pid", "--fork", "--mount-proc", "--kill-child",
		os.Args[0], "-test.run=^TestHelperPID1$")
	cmd.Env = append(os.Environ(), helperEnv+"=pid1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "zombies 0 ") {
		t.Errorf("orphans of killed workers were not reaped by PID 1:\n%s", out)
	}
}
