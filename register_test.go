package mp_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var regAny = mp.Register("test.reg.any", func(ctx context.Context, v any) (int, error) { return 0, nil })

// buildAndRun builds the program in testdata/name and returns its combined output.
func buildAndRun(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	ctx := bounded(t, 2*time.Minute)
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./testdata/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, bin)
	cmd.WaitDelay = 5 * time.Second
	out, _ := cmd.CombinedOutput()
	return string(out)
}

func TestNoMain(t *testing.T) {
	t.Parallel()
	out := buildAndRun(t, "nomain")
	want := "mp.Main was not called: call mp.Main() as the first statement of main"
	if strings.Count(out, want) != 2 {
		t.Errorf("got output %q, want Spawn and NewPool to say %q", out, want)
	}
}

func TestRegisterDuplicate(t *testing.T) {
	t.Parallel()
	out := buildAndRun(t, "dupname")
	if !strings.Contains(out, `mp: Register("same"): name already registered for same(int) int`) {
		t.Errorf("got output %q, want a panic naming the duplicate", out)
	}
}

func TestRegisterPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, fn, want string
	}{
		{name: "empty name", fn: "", want: "1 to 128 bytes"},
		{name: "space in name", fn: "a b", want: `byte ' ' is not allowed`},
		{name: "after Main", fn: "test.reg.late", want: "called after mp.Main"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, tt.want) {
					t.Errorf("got panic %q, want one containing %q", msg, tt.want)
				}
			}()
			mp.Register(tt.fn, func(ctx context.Context, x int) (int, error) { return x, nil })
		})
	}
}

func TestUnencodableValue(t *testing.T) {
	t.Parallel()
	_, err := mp.Spawn(t.Context(), regAny, any(func() {}), mp.WorkerOptions{})
	if err == nil || !strings.Contains(err.Error(), "encoding the argument") {
		t.Errorf("got %v, want an encoding error", err)
	}
	p := newPool(t, mp.PoolOptions{Workers: 1})
	_, err = mp.Apply(bounded(t, 10*time.Second), p, regAny, any(make(chan int)))
	if err == nil || !strings.Contains(err.Error(), "encoding the argument") {
		t.Errorf("Apply: got %v, want an encoding error", err)
	}
	out, errs, err := mp.MapAll(bounded(t, 10*time.Second), p, regAny, []any{1, make(chan int), "x"})
	if err != nil || len(out) != 3 || errs == nil || errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Errorf("MapAll: got %v, %v, %v; want only item 1 to fail", out, errs, err)
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	f, err := mp.Lookup[int, int]("test.pool.square")
	if err != nil || f.Name() != "test.pool.square" {
		t.Errorf("got %v, %v", f, err)
	}
	if _, err := mp.Lookup[int, int]("no.such"); !errors.Is(err, mp.ErrNotRegistered) {
		t.Errorf("unknown name: got %v, want ErrNotRegistered", err)
	}
	if _, err := mp.Lookup[string, int]("test.pool.square"); err == nil || !strings.Contains(err.Error(), "(int) int") {
		t.Errorf("wrong types: got %v, want an error naming the registered signature", err)
	}
}

func TestCPUCount(t *testing.T) {
	t.Parallel()
	if n := mp.CPUCount(); n < 1 || n > runtime.NumCPU() {
		t.Errorf("got %d, want 1..%d", n, runtime.NumCPU())
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil || runtime.NumCPU() < 2 {
		t.Skip("no taskset, or one CPU")
	}
	// A child limited to one CPU must count one.
	ctx := bounded(t, 30*time.Second)
	cmd := exec.CommandContext(ctx, taskset, "-c", "0", os.Args[0], "-test.run=^TestHelperCPUCount$")
	cmd.Env = append(os.Environ(), helperEnv+"=cpucount")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cpucount 1\n") {
		t.Errorf("under taskset -c 0: got %q, %v; want cpucount 1", out, err)
	}
}

func TestHelperCPUCount(t *testing.T) {
	if os.Getenv(helperEnv) != "cpucount" {
		t.Skip("helper process for TestCPUCount")
	}
	os.Stdout.WriteString("cpucount " + strconv.Itoa(mp.CPUCount()) + "\n")
}
