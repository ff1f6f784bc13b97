package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// EventLog is what the application needs of the event store.
type EventLog interface {
	eventstore.Store
	eventstore.Reader
}

// ReadSide is what the application needs of the read models: at start-up, the seats that are
// held (to arm their expiry) and the payments a crash left in the middle of a saga; then the
// date of a reservation, or the reservation of a payment, known by its ID only.
type ReadSide interface {
	HeldSeats(ctx context.Context) ([]HeldSeat, error)
	PendingPayments(ctx context.Context) ([]string, error)
	// ReservationDate returns the concert and date of a reservation. A reservation the read
	// model has not seen yet is looked up again once it has applied everything the log held
	// when asked; one that is still unknown is aggregates.ErrReservationNotFound.
	ReservationDate(ctx context.Context, reservationID string) (concertID, dateID string, err error)
	// PaymentReservation returns the reservation a payment pays, looked up again like
	// ReservationDate's; a payment still unknown is aggregates.ErrPaymentNotFound.
	PaymentReservation(ctx context.Context, paymentID string) (reservationID string, err error)
	// AppliedPaymentReservation is PaymentReservation from what the read model has applied,
	// without waiting for the log's heads: enough where this process is the log's only
	// writer and remembers its own recent payments.
	AppliedPaymentReservation(ctx context.Context, paymentID string) (reservationID string, err error)
	// Reservation and Payment return a record as the read model has it, for one its date has
	// forgotten (see forgotten.go); one unknown is aggregates.ErrReservationNotFound or
	// aggregates.ErrPaymentNotFound.
	Reservation(ctx context.Context, reservationID string) (Reservation, error)
	Payment(ctx context.Context, paymentID string) (Payment, error)
}

// HeldSeat is a seat held by a reservation until HeldUntil.
type HeldSeat struct {
	ConcertID, DateID string
	SeatNo            int
	ReservationID     string
	HeldUntil         time.Time
}

// Service carries out every command of the booking engine. It is safe for concurrent use.
type Service struct {
	log   EventLog
	cfg   Config
	clock Clock
	slog  *slog.Logger

	tokenMACs sync.Pool // of hash.Hash keyed with cfg.TokenSecret, for Service.mac

	concerts   *Repository[aggregates.Concert]
	sellouts   *Repository[aggregates.SellOut]
	dates      *Repository[aggregates.Date]
	wallets    walletGroups
	queueUsers queueGroups
	gate       *Repository[aggregates.Admission]

	// reads finds the date of a reservation or a payment (set by Start); resDates and payDates
	// remember the dates of the reservations and payments this process started or looked up,
	// so most commands need no read model.
	reads    atomic.Pointer[ReadSide]
	resDates *stateCache[dateRef]
	payDates *stateCache[dateRef]

	queue *queueIndex
	// queueShared is set once the queue follower runs and other instances may write the
	// queue: then a token this instance does not know, or knows as waiting, is judged only
	// after its index caught up with the log.
	queueShared atomic.Bool
	sweeper     *sweeper
	obs         Observer
	ready       atomic.Bool
	// queueLoading is set while Start replays the waiting queue: until then a token's
	// revocation is unknown, so queue commands answer ErrUnavailable rather than guess.
	queueLoading atomic.Bool
	snapshots    SnapshotStore // nil: no queue snapshots
	savedSeq     atomic.Uint64 // the sequence of the last queue snapshot saved or loaded
}

// Options are the collaborators of a Service; nil ones get defaults.
type Options struct {
	Clock    Clock
	Logger   *slog.Logger
	Observer Observer
	// SingleWriter says this process is the only one appending to the log (the embedded
	// server, whose data dir is locked). Cached aggregate states are then the log's own and
	// commands refused on them need no read; with several instances every refusal is checked
	// against the log first.
	SingleWriter bool
	// QueueSnapshots, when set, keeps snapshots of the waiting queue so a restart replays only
	// the QUEUE events after the last one (see queuesnapshot.go).
	QueueSnapshots SnapshotStore
}

// New returns a service over an event log. Call Start before serving.
func New(log EventLog, cfg Config, opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	s := &Service{log: log, cfg: cfg, clock: opts.Clock, slog: opts.Logger, obs: opts.Observer, snapshots: opts.QueueSnapshots}
	s.concerts = NewRepository(log, eventstore.TypeConcert, aggregates.Concert.Apply, 10_000, s.clock, s.obs)
	s.sellouts = NewRepository(log, eventstore.TypeSellOut, aggregates.SellOut.Apply, 10_000, s.clock, s.obs)
	// A date's state grows with its held and sold seats and its reservations, not with its
	// seat count: 1,000 dates of a flash sale fit, and an evicted one is read back from the log.
	s.dates = NewRepository(log, eventstore.TypeDate, aggregates.Date.Apply, 1_000, s.clock, s.obs)
	s.dates.owner = DateEventRef
	s.dates.compact = aggregates.Date.Compact
	s.resDates = newStateCache[dateRef](200_000)
	s.payDates = newStateCache[dateRef](200_000)
	s.wallets = newWalletGroups(log, s.clock, s.obs)
	s.queueUsers = newQueueGroups(log, s.clock, s.obs)
	s.gate = NewRepository(log, eventstore.TypeQueueGate, aggregates.Admission.Apply, 1, s.clock, s.obs)
	if opts.SingleWriter {
		s.concerts.singleWriter, s.sellouts.singleWriter = true, true
		s.dates.singleWriter, s.wallets.repo.singleWriter = true, true
		s.queueUsers.repo.singleWriter, s.gate.singleWriter = true, true
	}
	s.queue = newQueueIndex(aggregates.QueuePolicy{AdmitAll: cfg.QueueBatch <= 0, ActiveTTL: cfg.QueueActiveTTL}, cfg.QueueInterval)
	s.sweeper = newSweeper()
	return s
}

// step names one step of this request, such as "<payment>/debit": its dedup ID and its
// events' causation ID, under the request's correlation ID. Repository.Update stamps their
// time.
func (meta Meta) step(name string) step {
	return step{dedupID: name, meta: eventstore.Metadata{CorrelationID: meta.CorrelationID, CausationID: name}}
}

// newID returns a fresh UUIDv7: time-ordered, so IDs sort by creation.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// idFor returns the ID a command creates: derived from the request's key when it has one (a
// UUIDv5 of key and kind, the same on every retry), else a fresh UUIDv7.
func idFor(meta Meta, kind string) string {
	if meta.RequestKey == "" {
		return newID()
	}
	return uuid.NewSHA1(requestKeySpace, []byte(kind+"\x00"+meta.RequestKey)).String()
}

// requestKeySpace is the UUIDv5 namespace of IDs derived from request keys.
var requestKeySpace = uuid.MustParse("6f1c1d2e-5b7a-4c9e-9a57-2f0e8c3b7d41")

// concert returns a created concert. Concerts never change once created, so a cached one is
// current; an unknown one is looked up in the log every time.
func (s *Service) concert(ctx context.Context, concertID string) (aggregates.Concert, error) {
	if !aggregates.ValidID(concertID) {
		return aggregates.Concert{}, fmt.Errorf("concert %q: %w", concertID, aggregates.ErrConcertNotFound)
	}
	if c, _, ok := s.concerts.Cached(concertID); ok && c.Exists() {
		return c, nil
	}
	c, _, err := s.concerts.Load(ctx, concertID)
	if err != nil {
		return c, err
	}
	if !c.Exists() {
		return c, fmt.Errorf("concert %q: %w", concertID, aggregates.ErrConcertNotFound)
	}
	return c, nil
}

// Ready reports whether the service has loaded what it needs to answer (the queue) and
// recovered interrupted sagas.
func (s *Service) Ready() bool { return s.ready.Load() }
