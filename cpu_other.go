//go:build !linux

package mp

import "runtime"

func affinityCount() int { return runtime.NumCPU() }

func quotaCount() int { return 0 }
