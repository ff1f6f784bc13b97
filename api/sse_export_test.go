package api

import "time"

// Hooks for the external tests of the seat-map stream.

// SetSeatFeedHeartbeat sets the heartbeat of the streams that f feeds.
func SetSeatFeedHeartbeat(f *SeatFeed, d time.Duration) { f.heartbeat = d }

// SetSeatFeedBuffer sets how many changes a stream subscribed to f may fall behind.
func SetSeatFeedBuffer(f *SeatFeed, n int) { f.buffer = n }

// SeatFeedSubscribers returns how many streams are subscribed to f.
func SeatFeedSubscribers(f *SeatFeed) int { return int(f.active.Load()) }
