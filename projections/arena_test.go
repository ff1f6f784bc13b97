package projections

import (
	"bytes"
	"fmt"
	"testing"
)

func TestArenaCopiesKeepTheirBytes(t *testing.T) {
	tests := []struct {
		name   string
		values [][]byte
	}{
		{"an empty value is kept as empty, not as missing", [][]byte{{}}},
		{"values stay intact across many chunks", manyValues(3*arenaChunk/100, 100)},
		{"a value larger than an eighth of a chunk is copied on its own", [][]byte{bytes.Repeat([]byte{7}, arenaChunk/8+1), []byte("after")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a arena
			var copies [][]byte
			for _, v := range tt.values {
				src := bytes.Clone(v)
				c := a.copy(src)
				clear(src) // the caller may reuse its buffer
				copies = append(copies, c)
			}
			for i, c := range copies {
				if c == nil || !bytes.Equal(c, tt.values[i]) {
					t.Fatalf("copy %d = %q (nil %v), want %q", i, c, c == nil, tt.values[i])
				}
				if cap(c) != len(c) {
					t.Fatalf("copy %d has room to grow (len %d, cap %d): an append would overwrite the next", i, len(c), cap(c))
				}
			}
		})
	}
}

func manyValues(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte(fmt.Sprint(i%10)), size)
	}
	return out
}
