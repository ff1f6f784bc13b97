package eventstore

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Aggregate types. Each belongs to one bounded context, whose streams hold its subjects.
const (
	TypeConcert     = "concert"     // catalog: a concert with its dates, seats and prices
	TypeSellOut     = "sellout"     // catalog: the first sell-out of one date (ID "concert.date")
	TypeQueueGroup  = "queuegroup"  // queue: the queue places of the users in one group (ID the group's number; QueueGroupOf)
	TypeQueueUser   = "queueuser"   // queue: one user's tokens (ID userId), in its group's commits
	TypeQueueGate   = "queuegate"   // queue: the admission watermark (ID "main")
	TypeDate        = "date"        // seats: one concert date, its seats and reservations (ID "concert.date")
	TypeSeat        = "seat"        // one seat of one date (ID "concert.date.seatNo"), in its date's commits
	TypeReservation = "reservation" // one reservation (ID reservationId), in its date's commits
	TypePayment     = "payment"     // one payment (ID paymentId), in its reservation's date's commits
	TypeWalletGroup = "walletgroup" // wallets: the wallets of the users in one group (ID the group's number; WalletGroupOf)
	TypeWallet      = "wallet"      // one user's points (ID userId), in its group's commits
)

// Partitions is the number of streams each hot context is spread over. Changing it moves
// aggregates between streams, so it is fixed for the life of a data dir.
const Partitions = 8

// boundedContext says where the events of one bounded context are stored: the aggregate
// types of a context share its streams and its first subject token.
type boundedContext struct {
	name        string // stream name, or prefix of the partition streams
	subject     string // first subject token
	partitioned bool
}

var contexts = map[string]boundedContext{
	TypeConcert:     {"CATALOG", "catalog", false},
	TypeSellOut:     {"CATALOG", "catalog", false},
	TypeQueueGroup:  {"QUEUE", "queue", false},
	TypeQueueGate:   {"QUEUE", "queue", false},
	TypeDate:        {"SEATS", "seats", true},
	TypeWalletGroup: {"WALLETS", "wallets", true},
}

// StreamSpec describes one stream of the layout: its name and its subject filter.
type StreamSpec struct {
	Name    string
	Subject string // e.g. "seats.3.>"
}

// Layout returns every stream of the layout, catalog first: projections that join on the
// catalog rely on replaying it before the others.
func Layout() []StreamSpec {
	specs := []StreamSpec{{"CATALOG", "catalog.>"}, {"QUEUE", "queue.>"}}
	for _, c := range []boundedContext{contexts[TypeDate], contexts[TypeWalletGroup]} {
		for p := 0; p < Partitions; p++ {
			specs = append(specs, StreamSpec{fmt.Sprintf("%s_%d", c.name, p), fmt.Sprintf("%s.%d.>", c.subject, p)})
		}
	}
	return specs
}

// heldIn names, for aggregates whose events travel in another aggregate's commits, the type
// whose subjects store them: a seat's, a reservation's and a payment's events are decided and
// committed with their concert date's, a wallet's with its group's (WalletGroupOf), a queue
// user's with its queue group's (QueueGroupOf).
var heldIn = map[string]string{
	TypeSeat: TypeDate, TypeReservation: TypeDate, TypePayment: TypeDate,
	TypeWallet: TypeWalletGroup, TypeQueueUser: TypeQueueGroup,
}

// StreamsOfTypes returns the streams that hold aggregates of any of the types, each once and
// in layout order: types stored in one context's commits (a date's seats, reservations and
// payments) share its streams, which a reader must not read twice.
func StreamsOfTypes(types ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range types {
		for _, s := range StreamsOf(t) {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// WalletGroups is how many groups the wallets are spread over; a user's group is a hash of the
// user ID (WalletGroupOf), so changing it moves wallets between groups and it is fixed for the
// life of a data dir. A group is one aggregate: while one of its commits is in flight, the
// commands of all its users queue and go as the next single commit. Few groups make a busy
// service's concurrent charges and debits share commits (in flight at once: at most one commit
// per group, WalletGroups/Partitions per stream); many groups keep a group's history short,
// which a cold group (after a restart) reads whole, as nothing snapshots it. 32 is 4 groups a
// stream and 1/32 of the wallet events a group; measured under `booking bench booking` at
// 1,500 arrivals/s, a wallet commit carried ~2.9 commands with 32 groups and ~2.0 with 64
// (docs/BENCHMARKS.md).
const WalletGroups = 32

// WalletGroupOf returns the group whose commits hold a user's wallet events: the FNV-1a hash
// of the user ID modulo WalletGroups. A group's partition is its number modulo Partitions
// (WalletGroups is a multiple of it), so every WALLETS stream holds as many groups, and a
// wallet is in the stream its own subject was in before wallets were grouped.
func WalletGroupOf(userID string) AggregateRef {
	return AggregateRef{Type: TypeWalletGroup, ID: strconv.FormatUint(uint64(hash(userID)%WalletGroups), 10)}
}

// QueueGroups is how many groups the queue's users are spread over, by a hash of the user ID
// (QueueGroupOf); changing it moves users between groups, so it is fixed for the life of a data
// dir. Every group is on the one QUEUE stream, which nats-server fsyncs one message at a time:
// a message for every token issued or revoked made that stream cap the booking flow (~1,700 bookings/s at a mean append
// of 734 ms). A group is one aggregate, so the tokens issued and revoked while one of its
// commits is in flight go as its next single commit; 32 groups keep at most 32 QUEUE commits
// in flight, as many as the wallets keep over all their streams.
const QueueGroups = 32

// QueueGroupOf returns the group whose commits hold a user's queue events: the FNV-1a hash of
// the user ID modulo QueueGroups, the scheme of WalletGroupOf.
func QueueGroupOf(userID string) AggregateRef {
	return AggregateRef{Type: TypeQueueGroup, ID: strconv.FormatUint(uint64(hash(userID)%QueueGroups), 10)}
}

// StreamsOf returns the names of the streams that hold aggregates of type typ.
func StreamsOf(typ string) []string {
	if t, ok := heldIn[typ]; ok {
		typ = t
	}
	c, ok := contexts[typ]
	if !ok {
		return nil
	}
	if !c.partitioned {
		return []string{c.name}
	}
	names := make([]string, Partitions)
	for p := range names {
		names[p] = fmt.Sprintf("%s_%d", c.name, p)
	}
	return names
}

// Place returns the stream and subject of one aggregate. Subjects are
// "<context>.<partition>.<type>.<id>" for partitioned contexts and "<context>.<type>.<id>"
// otherwise; IDs never contain wildcards because they are validated at the edge.
func Place(agg AggregateRef) (stream, subject string, err error) {
	c, ok := contexts[agg.Type]
	if !ok {
		if owner, held := heldIn[agg.Type]; held {
			return "", "", fmt.Errorf("eventstore: %s events are appended in %s commits, not on a subject of their own", agg.Type, owner)
		}
		return "", "", fmt.Errorf("eventstore: unknown aggregate type %q", agg.Type)
	}
	if agg.ID == "" || strings.ContainsAny(agg.ID, " *>\t\r\n") || strings.HasPrefix(agg.ID, ".") || strings.HasSuffix(agg.ID, ".") || strings.Contains(agg.ID, "..") {
		return "", "", fmt.Errorf("eventstore: invalid aggregate ID %q", agg.ID)
	}
	if agg.Type == TypeQueueGroup {
		g, err := strconv.ParseUint(agg.ID, 10, 32)
		if err != nil || g >= QueueGroups || strconv.FormatUint(g, 10) != agg.ID {
			return "", "", fmt.Errorf("eventstore: invalid queue group %q (groups are 0 to %d)", agg.ID, QueueGroups-1)
		}
	}
	if !c.partitioned {
		return c.name, c.subject + "." + agg.Type + "." + agg.ID, nil
	}
	p := partition(agg.ID)
	if agg.Type == TypeWalletGroup {
		g, err := strconv.ParseUint(agg.ID, 10, 32)
		if err != nil || g >= WalletGroups || strconv.FormatUint(g, 10) != agg.ID {
			return "", "", fmt.Errorf("eventstore: invalid wallet group %q (groups are 0 to %d)", agg.ID, WalletGroups-1)
		}
		p = int(g % Partitions)
	}
	return fmt.Sprintf("%s_%d", c.name, p), fmt.Sprintf("%s.%d.%s.%s", c.subject, p, agg.Type, agg.ID), nil
}

// RefFromSubject is the inverse of Place.
func RefFromSubject(subject string) (AggregateRef, bool) {
	parts := strings.SplitN(subject, ".", 4)
	if len(parts) < 3 {
		return AggregateRef{}, false
	}
	if len(parts) == 4 {
		if c, ok := contexts[parts[2]]; ok && c.partitioned && c.subject == parts[0] {
			return AggregateRef{Type: parts[2], ID: parts[3]}, true
		}
	}
	rest := strings.SplitN(subject, ".", 3)
	if c, ok := contexts[rest[1]]; ok && !c.partitioned && c.subject == rest[0] {
		return AggregateRef{Type: rest[1], ID: rest[2]}, true
	}
	return AggregateRef{}, false
}

func partition(id string) int { return int(hash(id) % Partitions) }

func hash(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32()
}
