//go:build !linux

package mp

import "runtime"

// thisPlatform is what this system lets a pool do: it reads no worker's
// resident set size (the memory options need it).
var thisPlatform = platform{name: runtime.GOOS, rss: false}
