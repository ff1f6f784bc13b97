//go:build race

package main

// raceMemoryFactor scales the memory bounds of the process-level tests under the race
// detector, whose shadow memory and per-goroutine state make every byte of the server cost
// several (a seat-map stream: about 6 KB without it, 50–55 KB with it).
const raceMemoryFactor = 8
