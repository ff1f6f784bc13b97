package api

// Hooks for the external tests of the seat-map stream.

// SeatFeedSubscribers returns how many streams f has open.
func SeatFeedSubscribers(f *SeatFeed) int { return f.Streams() }
