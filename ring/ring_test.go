package ring

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// panics runs f and returns what it panicked with, or nil.
func panics(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

// stress returns n, or a smaller count under the race detector.
func stress(n int) int {
	if raceEnabled {
		return n / 8
	}
	return n
}

func TestRoundPow2(t *testing.T) {
	for _, tc := range []struct{ in, want int }{
		{-1, 2}, {0, 2}, {1, 2}, {2, 2}, {3, 4}, {4, 4}, {5, 8},
		{1000, 1024}, {1024, 1024}, {1025, 2048}, {1 << 30, 1 << 30},
	} {
		if got := roundPow2(tc.in); got != tc.want {
			t.Errorf("roundPow2(%d) = %d, want %d", tc.in, got, tc.want)
		}
		if tc.in < 1<<20 { // keep the test's memory small
			if got := NewMPMC[int](tc.in).Cap(); got != tc.want {
				t.Errorf("NewMPMC(%d).Cap() = %d, want %d", tc.in, got, tc.want)
			}
		}
	}
	if panics(func() { roundPow2(1<<30 + 1) }) == nil {
		t.Error("roundPow2(1<<30+1) did not panic")
	}
}

// queue is the MPMC API the single-goroutine tests use.
type queue interface {
	Push(int) bool
	Pop() (int, bool)
	Len() int
	Cap() int
}

var queues = []struct {
	name string
	new  func(int) queue
}{
	{"MPMC", func(n int) queue { return NewMPMC[int](n) }},
}

func TestQueueFIFO(t *testing.T) {
	for _, qt := range queues {
		t.Run(qt.name, func(t *testing.T) {
			q := qt.new(5) // rounds to 8
			if q.Cap() != 8 {
				t.Fatalf("Cap = %d, want 8", q.Cap())
			}
			if v, ok := q.Pop(); ok || v != 0 {
				t.Fatalf("Pop on a new queue = %d, %v; want 0, false", v, ok)
			}
			for i := range 8 {
				if !q.Push(i + 100) {
					t.Fatalf("Push %d failed with Len %d", i, q.Len())
				}
				if q.Len() != i+1 {
					t.Fatalf("Len = %d after %d pushes", q.Len(), i+1)
				}
			}
			if q.Push(999) {
				t.Fatal("Push on a full queue succeeded")
			}
			if q.Len() != 8 {
				t.Fatalf("Len = %d on a full queue", q.Len())
			}
			// One pop makes room for exactly one push, which lands last.
			if v, ok := q.Pop(); !ok || v != 100 {
				t.Fatalf("Pop = %d, %v; want 100, true", v, ok)
			}
			if !q.Push(108) || q.Push(999) {
				t.Fatal("a full queue with one slot freed did not take exactly one item")
			}
			for i := 1; i <= 8; i++ {
				if v, ok := q.Pop(); !ok || v != 100+i {
					t.Fatalf("Pop = %d, %v; want %d, true", v, ok, 100+i)
				}
			}
			if v, ok := q.Pop(); ok || v != 0 {
				t.Fatalf("Pop on a drained queue = %d, %v; want 0, false", v, ok)
			}
			if q.Len() != 0 {
				t.Fatalf("Len = %d on a drained queue", q.Len())
			}
		})
	}
}

// TestQueueModel runs random pushes and pops for many laps of a small ring
// against a slice, so the positions wrap many times.
func TestQueueModel(t *testing.T) {
	for _, qt := range queues {
		t.Run(qt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			q := qt.new(4)
			var model []int
			next := 0
			for range 20000 {
				if r.IntN(2) == 0 {
					ok := q.Push(next)
					if want := len(model) < q.Cap(); ok != want {
						t.Fatalf("Push with %d queued = %v, want %v", len(model), ok, want)
					}
					if ok {
						model = append(model, next)
					}
					next++
				} else {
					v, ok := q.Pop()
					if len(model) == 0 {
						if ok {
							t.Fatalf("Pop on an empty queue returned %d", v)
						}
						continue
					}
					if !ok || v != model[0] {
						t.Fatalf("Pop = %d, %v; want %d, true", v, ok, model[0])
					}
					model = model[1:]
				}
				if q.Len() != len(model) {
					t.Fatalf("Len = %d, want %d", q.Len(), len(model))
				}
			}
		})
	}
}

// TestQueueClearsSlots checks that popped slots no longer hold the item, so
// a queue of pointers does not keep buffers alive after they leave it.
func TestQueueClearsSlots(t *testing.T) {
	x := new(int)
	m := NewMPMC[*int](4)
	m.Push(x)
	m.Pop()
	for i := range m.cells {
		if m.cells[i].val != nil {
			t.Errorf("MPMC cell %d still holds a pointer", i)
		}
	}
}

// TestMPMCConcurrent runs 4 producers and 4 consumers through a small ring.
// Every value is unique; the values popped must be exactly those pushed, and
// each consumer must see each producer's values in the order pushed.
func TestMPMCConcurrent(t *testing.T) {
	const producers, consumers = 4, 4
	per := stress(1 << 15)
	q := NewMPMC[uint64](16)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range per {
				for !q.Push(uint64(p)<<32 | uint64(i)) {
					runtime.Gosched()
				}
			}
		})
	}
	var (
		mu     sync.Mutex
		got    []uint64
		popped atomic.Int64
		total  = int64(producers * per)
		cwg    sync.WaitGroup
	)
	for range consumers {
		cwg.Go(func() {
			var mine []uint64
			last := [producers]int64{-1, -1, -1, -1}
			for popped.Load() < total {
				v, ok := q.Pop()
				if !ok {
					runtime.Gosched()
					continue
				}
				popped.Add(1)
				p, i := v>>32, int64(v&0xffffffff)
				if p >= producers {
					t.Errorf("popped %#x, never pushed", v)
					continue
				}
				if i <= last[p] {
					t.Errorf("consumer saw producer %d's %d after %d", p, i, last[p])
				}
				last[p] = i
				mine = append(mine, v)
			}
			mu.Lock()
			got = append(got, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	cwg.Wait()
	checkUnique(t, got, producers, per)
	if _, ok := q.Pop(); ok {
		t.Error("queue not empty at the end")
	}
}

// checkUnique checks that got holds each of producer<<32|i once, for every
// producer below producers and i below per.
func checkUnique(t *testing.T, got []uint64, producers, per int) {
	t.Helper()
	if len(got) != producers*per {
		t.Fatalf("popped %d values, pushed %d", len(got), producers*per)
	}
	seen := make([]bool, producers*per)
	for _, v := range got {
		p, i := int(v>>32), int(v&0xffffffff)
		if p >= producers || i >= per {
			t.Fatalf("popped %#x, never pushed", v)
		}
		if seen[p*per+i] {
			t.Fatalf("popped %#x twice", v)
		}
		seen[p*per+i] = true
	}
}

// TestMPMCFullConcurrent has 4 producers race to fill a queue nobody pops:
// exactly Cap pushes succeed, and those are the values that come out.
func TestMPMCFullConcurrent(t *testing.T) {
	const producers, per = 4, 64
	for round := range stress(64) {
		q := NewMPMC[uint64](64)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			ok    [producers]int
		)
		for p := range producers {
			wg.Go(func() {
				<-start
				for i := range per {
					if !q.Push(uint64(p)<<32 | uint64(i)) {
						break // full stays full: nobody pops
					}
					ok[p]++
				}
			})
		}
		close(start)
		wg.Wait()
		if sum := ok[0] + ok[1] + ok[2] + ok[3]; sum != q.Cap() || q.Len() != q.Cap() {
			t.Fatalf("round %d: %d pushes succeeded, Len %d, Cap %d", round, sum, q.Len(), q.Cap())
		}
		// Each producer's successful pushes are its first ok[p] values.
		var got []uint64
		for {
			v, ok := q.Pop()
			if !ok {
				break
			}
			got = append(got, v)
		}
		slices.Sort(got)
		var want []uint64
		for p := range producers {
			for i := range ok[p] {
				want = append(want, uint64(p)<<32|uint64(i))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: popped %x, want %x", round, got, want)
		}
	}
}
