package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/projections"
)

// encodedSeats gives the fake queries the engine's ready-encoded seat maps.
type encodedSeats struct{ *fakeQueries }

func (q encodedSeats) SeatsJSON(ctx context.Context, concertID, dateID string) ([]byte, error) {
	list, err := q.Seats(ctx, concertID, dateID)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"seats": list})
}

func (q encodedSeats) SeatsJSONGzip(ctx context.Context, concertID, dateID string) ([]byte, error) {
	b, err := q.SeatsJSON(ctx, concertID, dateID)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var _ projections.SeatMapEncoder = encodedSeats{}

func TestSeatMapsAreServedGzippedToClientsThatAcceptIt(t *testing.T) {
	e := newEnv(t, func(d *api.Deps, _ *api.Config) { d.Queries = encodedSeats{d.Queries.(*fakeQueries)} })
	plain := e.Get("/api/v1/concerts/c1/dates/d1/seats")
	if plain.Status != http.StatusOK || plain.Header.Get("Content-Encoding") != "" {
		t.Fatalf("plain seat map: %d, Content-Encoding %q", plain.Status, plain.Header.Get("Content-Encoding"))
	}
	cases := []struct {
		name     string
		path     string
		encoding string
		status   int
		gzipped  bool
	}{
		{"a seat map asked with gzip comes gzipped and says the same", "/api/v1/concerts/c1/dates/d1/seats", "gzip, deflate, br", http.StatusOK, true},
		{"a seat map asked without gzip comes as plain JSON", "/api/v1/concerts/c1/dates/d1/seats", "br", http.StatusOK, false},
		{"an unknown date asked with gzip is a plain problem", "/api/v1/concerts/c1/dates/zz/seats", "gzip", http.StatusNotFound, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Do(get(tc.path, "Accept-Encoding", tc.encoding))
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if got := r.Header.Get("Content-Encoding") == "gzip"; got != tc.gzipped {
				t.Fatalf("Content-Encoding %q, want gzip: %v", r.Header.Get("Content-Encoding"), tc.gzipped)
			}
			if tc.status == http.StatusOK && r.Header.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("Vary %q, want Accept-Encoding (caches must keep both forms apart)", r.Header.Get("Vary"))
			}
			body := r.Body
			if tc.gzipped {
				zr, err := gzip.NewReader(bytes.NewReader(r.Body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if tc.status == http.StatusOK && !bytes.Equal(body, plain.Body) {
				t.Fatalf("body %s, want %s", body, plain.Body)
			}
			if tc.status != http.StatusOK && !json.Valid(body) {
				t.Fatalf("problem body is not JSON: %q", body)
			}
		})
	}
}
