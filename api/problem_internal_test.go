package api

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"testing"

	"github.com/booking-engine/booking/aggregates"
)

// refusalsByName lists every aggregates refusal. TestEveryRefusalHasAProblem checks it against
// the aggregates source, so a refusal added there without a problem here fails the test.
var refusalsByName = map[string]error{
	"ErrInvalid": aggregates.ErrInvalid, "ErrConcertExists": aggregates.ErrConcertExists,
	"ErrConcertNotFound": aggregates.ErrConcertNotFound, "ErrDateNotFound": aggregates.ErrDateNotFound,
	"ErrSeatNotFound": aggregates.ErrSeatNotFound, "ErrSeatLimitReached": aggregates.ErrSeatLimitReached, "ErrSeatUnavailable": aggregates.ErrSeatUnavailable,
	"ErrSeatNotHeld": aggregates.ErrSeatNotHeld, "ErrReservationExists": aggregates.ErrReservationExists,
	"ErrReservationNotFound": aggregates.ErrReservationNotFound, "ErrReservationNotPayable": aggregates.ErrReservationNotPayable,
	"ErrReservationNotCancellable": aggregates.ErrReservationNotCancellable, "ErrForbidden": aggregates.ErrForbidden,
	"ErrPaymentNotFound": aggregates.ErrPaymentNotFound, "ErrPaymentNotRefundable": aggregates.ErrPaymentNotRefundable,
	"ErrInvalidAmount": aggregates.ErrInvalidAmount, "ErrInsufficientPoints": aggregates.ErrInsufficientPoints,
	"ErrTokenStillValid": aggregates.ErrTokenStillValid,
}

// declaredRefusals returns the names of the package-level variables of aggregates that are
// built with refuse(...).
func declaredRefusals(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "aggregates", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range vs.Values {
				if call, ok := v.(*ast.CallExpr); ok {
					if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "refuse" {
						names = append(names, vs.Names[i].Name)
					}
				}
			}
			return true
		})
	}
	sort.Strings(names)
	return names
}

func TestEveryRefusalHasAProblem(t *testing.T) {
	declared := declaredRefusals(t)
	if len(declared) != len(refusalsByName) {
		t.Errorf("aggregates declares %d refusals %v, this test lists %d: add the new ones here and to refusalProblems", len(declared), declared, len(refusalsByName))
	}
	for _, name := range declared {
		t.Run("aggregates."+name+" is a 4xx the client caused, wrapped or not", func(t *testing.T) {
			err, ok := refusalsByName[name]
			if !ok {
				t.Fatalf("%s is not listed here; list it and give it a problem in refusalProblems", name)
			}
			for _, e := range []error{err, fmt.Errorf("saga step: %w", fmt.Errorf("decide: %w", err))} {
				p, retryAfter, internal := problemFor(e)
				if p.Status < 400 || p.Status > 499 || internal || retryAfter != 0 {
					t.Fatalf("problemFor(%v) = %d %s (internal %v, retry after %v), want a 4xx the client caused", e, p.Status, p.Code, internal, retryAfter)
				}
			}
		})
	}
}
