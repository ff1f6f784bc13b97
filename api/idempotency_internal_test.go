package api

import "testing"

func TestSameRequest(t *testing.T) {
	const path = "/api/v1/reservations"
	body := `{"userId":"u1","concertId":"c1","dateId":"d1","seatNos":[12]}`
	reordered := "{ \"seatNos\": [12], \"dateId\": \"d1\",\n \"concertId\": \"c1\", \"userId\": \"u1\" }"
	other := `{"userId":"u1","concertId":"c1","dateId":"d1","seatNos":[13]}`
	tests := []struct {
		name string
		kept []byte
		body string
		path string
		want bool
	}{
		{"the same body is the same request", fingerprint(path, []byte(body)), body, path, true},
		{"the same JSON with other white space and field order is the same request", fingerprint(path, []byte(body)), reordered, path, true},
		{"another body is another request", fingerprint(path, []byte(body)), other, path, false},
		{"another path is another request", fingerprint(path, []byte(body)), body, "/api/v1/payments", false},
		{"an answer kept before canonical JSON matches the same body", legacyFingerprint(path, []byte(body)), reordered, path, true},
		{"an answer kept before canonical JSON does not match another body", legacyFingerprint(path, []byte(body)), other, path, false},
		{"an empty body is the same request as an empty body", fingerprint(path, nil), " ", path, true},
		{"a body that is not JSON is compared as it is", fingerprint(path, []byte("{x")), "{x", path, true},
		{"a body that is not JSON is not another body", fingerprint(path, []byte("{x")), "{y", path, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := fingerprint(tt.path, []byte(tt.body))
			if got := sameRequest(tt.kept, fp, tt.path, []byte(tt.body)); got != tt.want {
				t.Errorf("sameRequest = %v, want %v", got, tt.want)
			}
		})
	}
}

func BenchmarkFingerprint(b *testing.B) {
	body := []byte(`{"userId":"user-000123","concertId":"bench-8203ca32-flash-0","dateId":"d1","seatNos":[12]}`)
	b.ReportAllocs()
	for b.Loop() {
		fingerprint("/api/v1/reservations", body)
	}
}
