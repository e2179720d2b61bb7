package loadgen

import "testing"

func TestTracker(t *testing.T) {
	const (
		I = InOrder
		R = Reordered
		D = Duplicate
		O = OutOfRange
	)
	for _, tc := range []struct {
		name                       string
		seqs                       []uint64
		verdicts                   []Verdict
		sent                       uint64
		recv, dup, reord, lost, oo uint64
	}{
		{"in order", []uint64{0, 1, 2, 3}, []Verdict{I, I, I, I}, 4, 4, 0, 0, 0, 0},
		{"gap", []uint64{0, 1, 3}, []Verdict{I, I, I}, 4, 3, 0, 0, 1, 0},
		{"tail lost", []uint64{0, 1}, []Verdict{I, I}, 5, 2, 0, 0, 3, 0},
		{"duplicates", []uint64{0, 0, 1, 1, 1, 2}, []Verdict{I, D, I, D, D, I}, 3, 3, 3, 0, 0, 0},
		{"swap", []uint64{1, 0, 2}, []Verdict{I, R, I}, 3, 3, 0, 1, 0, 0},
		{"late duplicate", []uint64{0, 1, 2, 0}, []Verdict{I, I, I, D}, 3, 3, 1, 0, 0, 0},
		{"reordered then duplicated", []uint64{2, 0, 1, 0, 1, 2}, []Verdict{I, R, R, D, D, D}, 3, 3, 3, 2, 0, 0},
		{"first packets lost", []uint64{5, 6, 4}, []Verdict{I, I, R}, 7, 3, 0, 1, 4, 0},
		{"word boundaries", []uint64{63, 64, 127, 128}, []Verdict{I, I, I, I}, 130, 4, 0, 0, 126, 0},
		{"grows", []uint64{0, 1 << 20, 1<<20 + 1, 1<<20 - 1}, []Verdict{I, I, I, R}, 1<<20 + 2, 4, 0, 1, 1<<20 - 2, 0},
		{"out of range", []uint64{0, MaxJump, 1 << 62, 1}, []Verdict{I, O, O, I}, 2, 2, 0, 0, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(0)
			for i, s := range tc.seqs {
				if v := tr.Add(s); v != tc.verdicts[i] {
					t.Errorf("Add(%d) #%d = %d, want %d", s, i, v, tc.verdicts[i])
				}
			}
			if tr.Received != tc.recv || tr.Duplicates != tc.dup || tr.Reordered != tc.reord || tr.OutOfRange != tc.oo {
				t.Errorf("received %d dup %d reordered %d out of range %d, want %d %d %d %d",
					tr.Received, tr.Duplicates, tr.Reordered, tr.OutOfRange, tc.recv, tc.dup, tc.reord, tc.oo)
			}
			if l := tr.Lost(tc.sent); l != tc.lost {
				t.Errorf("Lost(%d) = %d, want %d", tc.sent, l, tc.lost)
			}
			for _, s := range tc.seqs {
				if !tr.Seen(s) && s < MaxJump {
					t.Errorf("Seen(%d) = false", s)
				}
			}
		})
	}
}

func TestTrackerCount(t *testing.T) {
	tr := NewTracker(0)
	seen := map[uint64]bool{}
	for s := uint64(0); s < 1000; s += 3 {
		tr.Add(s)
		seen[s] = true
	}
	for _, r := range [][2]uint64{{0, 0}, {0, 1}, {0, 1000}, {1, 2}, {60, 70}, {63, 65}, {64, 128}, {5, 900}, {999, 5000}, {10, 5}, {1 << 40, 1<<40 + 5}} {
		var want uint64
		for s := r[0]; s < r[1] && s < 1000; s++ {
			if seen[s] {
				want++
			}
		}
		if got := tr.Count(r[0], r[1]); got != want {
			t.Errorf("Count(%d, %d) = %d, want %d", r[0], r[1], got, want)
		}
	}
}

func BenchmarkTrackerAdd(b *testing.B) {
	b.Run("in-order", func(b *testing.B) {
		tr := NewTracker(1 << 20)
		b.ReportAllocs()
		var seq uint64
		for b.Loop() {
			tr.Add(seq & (1<<20 - 1))
			seq++
		}
	})
	b.Run("reordered+dup", func(b *testing.B) {
		// Swaps neighbours and repeats every eighth packet.
		tr := NewTracker(1 << 20)
		b.ReportAllocs()
		var i uint64
		for b.Loop() {
			tr.Add((i ^ 1) & (1<<20 - 1))
			if i%8 == 0 {
				tr.Add((i ^ 1) & (1<<20 - 1))
			}
			i++
		}
	})
}
