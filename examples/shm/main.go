//go:build linux

// Shm fills 256 MiB of shared memory in the parent, has two pool workers
// each sum half of it, and prints the total, checked against the parent's
// own sum. The memory is not copied: each worker maps the same block.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp"
)

// half is a part of the block, for one worker to sum.
type half struct {
	Mem    *mp.SharedMemory
	Lo, Hi int
}

var sum = mp.Register("shm.sum", func(ctx context.Context, h half) (uint64, error) {
	var s uint64
	for _, b := range h.Mem.Bytes()[h.Lo:h.Hi] {
		s += uint64(b)
	}
	return s, nil
})

func main() {
	mp.Main()
	const size = 256 << 20
	ctx := context.Background()
	mem, err := mp.CreateSharedMemory("", size)
	if err != nil {
		log.Fatal(err)
	}
	defer mem.Close()
	var want uint64
	for i, b := 0, mem.Bytes(); i < size; i++ {
		b[i] = byte(i * 7)
		want += uint64(b[i])
	}
	pool, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	halves := []half{{mem, 0, size / 2}, {mem, size / 2, size}}
	sums, err := mp.Map(ctx, pool, sum, halves, mp.ChunkSize(1))
	if err != nil {
		log.Fatal(err)
	}
	total := sums[0] + sums[1]
	fmt.Println("total:", total)
	fmt.Println("matches the parent's sum:", total == want)
}
