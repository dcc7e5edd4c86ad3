package mp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-mp/mp"
)

// OpenSharedMemory attaches only to a block this user made under the
// name (issue 18): not through a symbolic link, not to another user's.

func TestOpenSharedMemorySymlink(t *testing.T) {
	t.Parallel()
	target := fmt.Sprintf("mp-test-target-%d", os.Getpid())
	m, err := mp.CreateSharedMemory(target, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer m.Unlink()
	outside := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(outside, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"/dev/shm/" + target, outside} {
		link := fmt.Sprintf("mp-test-link-%d", os.Getpid())
		if err := os.Symlink(to, "/dev/shm/"+link); err != nil {
			t.Fatal(err)
		}
		o, err := mp.OpenSharedMemory(link)
		os.Remove("/dev/shm/" + link)
		if err == nil {
			o.Close()
			t.Errorf("OpenSharedMemory of a link to %s: got no error, want a refusal", to)
		} else if !strings.Contains(err.Error(), "link") {
			t.Errorf("OpenSharedMemory of a link to %s: got %q, want it to say it is a link", to, err)
		}
	}
}

func TestOpenSharedMemoryOtherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("making a block owned by another user takes root")
	}
	name := fmt.Sprintf("mp-test-other-%d", os.Getpid())
	m, err := mp.CreateSharedMemory(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer m.Unlink()
	if err := os.Chown("/dev/shm/"+name, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	o, err := mp.OpenSharedMemory(name)
	if err == nil {
		o.Close()
		t.Fatal("OpenSharedMemory of another user's block: got no error, want a refusal")
	}
	if !strings.Contains(err.Error(), "65534") {
		t.Errorf("got %q, want it to name the owner", err)
	}
}
