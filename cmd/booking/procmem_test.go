package main

import "testing"

func TestStatusKB(t *testing.T) {
	status := []byte("Name:\tbooking\nVmRSS:\t  812344 kB\nRssAnon:\t  700000 kB\nRssFile:\t  112344 kB\nRssShmem:\t       0 kB\n")
	tests := []struct {
		name string
		key  string
		want float64
		ok   bool
	}{
		{"the anonymous part is read in kB", "RssAnon:", 700000, true},
		{"the file-backed part is read in kB", "RssFile:", 112344, true},
		{"a key the status does not have is not found", "RssHuge:", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := statusKB(status, tt.key)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("statusKB(%q) = %v, %v; want %v, %v", tt.key, got, ok, tt.want, tt.ok)
			}
		})
	}
}
