// Package mp is process-based parallelism for Go.
package mp
