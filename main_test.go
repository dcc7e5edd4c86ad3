package mp_test

import (
	"os"
	"testing"

	"github.com/go-mp/mp"
)

func TestMain(m *testing.M) {
	mp.Main()
	os.Exit(m.Run())
}
