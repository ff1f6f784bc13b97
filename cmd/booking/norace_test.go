//go:build !race

package main

// raceMemoryFactor scales the memory bounds of the process-level tests; 1 without the race
// detector.
const raceMemoryFactor = 1
