package loadgen

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a generator run. Packets are sequence numbers:
// with Copies > 1 each is sent several times and counts once.
type Report struct {
	// RunID is the run's random identifier: the generator's session index
	// G from the handshake, which the echoes carry.
	RunID uint32 `json:"run_id"`
	// PeerIndex is the session index S the sink chose in its response,
	// which the datagrams sent carry.
	PeerIndex uint32 `json:"peer_index"`
	// Handshakes counts the handshake initiations sent.
	Handshakes int `json:"handshakes"`
	// HandshakeTime is the time from the first initiation to the
	// response; the rest of the report starts at the response.
	HandshakeTime time.Duration `json:"handshake_ns"`
	// Target is the address the load was sent to.
	Target string `json:"target"`
	// Backend names the socket backend.
	Backend string `json:"backend,omitempty"`
	// Size is the payload size of each datagram, in bytes.
	Size int `json:"size"`
	// Copies is how many times each packet was sent.
	Copies int `json:"copies"`
	// Rate is the requested rate in packets per second; 0 is flat out.
	Rate float64 `json:"rate"`

	// Sent counts the packets handed to the socket, those whose send
	// failed included (they count as lost).
	Sent uint64 `json:"sent"`
	// Datagrams counts the data datagrams the socket accepted, copies
	// included.
	Datagrams uint64 `json:"datagrams_sent"`
	// SendErrors counts datagrams the socket refused, initiations
	// included.
	SendErrors uint64 `json:"send_errors"`
	// FirstError describes the first send error.
	FirstError string `json:"first_error,omitempty"`
	// Received counts distinct packets echoed back.
	Received uint64 `json:"received"`
	// Duplicates counts further copies of packets already received.
	Duplicates uint64 `json:"duplicates"`
	// Lost is Sent - Received.
	Lost uint64 `json:"lost"`
	// Reordered counts packets received after a higher sequence number.
	Reordered uint64 `json:"reordered"`
	// Foreign counts datagrams received that were neither echoes of this
	// run nor responses to its initiations.
	Foreign uint64 `json:"foreign"`
	// LossPercent is 100 * Lost / Sent.
	LossPercent float64 `json:"loss_percent"`

	// Duration is the time spent sending; the rates below are per second
	// of it.
	Duration time.Duration `json:"duration_ns"`
	// OfferedPPS is Sent per second.
	OfferedPPS float64 `json:"offered_pps"`
	// DeliveredPPS is Received per second.
	DeliveredPPS float64 `json:"delivered_pps"`
	// DeliveredGbps is the payload of the received packets, in gigabits
	// per second.
	DeliveredGbps float64 `json:"delivered_gbps"`

	// Round-trip times of the first copy of each packet received, in
	// microseconds; quantiles are within 0.4%.
	RTTP50  float64 `json:"rtt_p50_us"`
	RTTP90  float64 `json:"rtt_p90_us"`
	RTTP99  float64 `json:"rtt_p99_us"`
	RTTP999 float64 `json:"rtt_p999_us"`
	RTTMax  float64 `json:"rtt_max_us"`
	RTTMin  float64 `json:"rtt_min_us"`
	RTTMean float64 `json:"rtt_mean_us"`

	// Series is the time series, when Options.SeriesInterval was set. It
	// runs from the start of sending to the end of the wait for replies.
	Series []Interval `json:"series,omitempty"`
}

// Interval is one entry of a Report's time series.
type Interval struct {
	// Start is the interval's offset from the start of sending.
	Start time.Duration `json:"start_ns"`
	// Sent counts packets sent in the interval.
	Sent uint64 `json:"sent"`
	// Received counts distinct packets received in the interval.
	Received uint64 `json:"received"`
	// Lost counts packets sent in the interval that never came back.
	Lost uint64 `json:"lost"`
	// RTTMax and RTTMean are the largest and mean round-trip times of the
	// packets received in the interval, in microseconds.
	RTTMax  float64 `json:"rtt_max_us"`
	RTTMean float64 `json:"rtt_mean_us"`
}

// WriteTable prints the report as a short human-readable table.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "target\t%s\t%s, %d B x%d, run %08x\n", r.Target, r.Backend, r.Size, r.Copies, r.RunID)
	fmt.Fprintf(tw, "handshake\t%.3f ms\tinitiations %d, sink's index %08x\n", float64(r.HandshakeTime)/1e6, r.Handshakes, r.PeerIndex)
	fmt.Fprintf(tw, "duration\t%.3f s\t\n", r.Duration.Seconds())
	fmt.Fprintf(tw, "sent\t%d\t%.0f pkt/s offered\n", r.Sent, r.OfferedPPS)
	fmt.Fprintf(tw, "received\t%d\t%.0f pkt/s, %.3f Gbit/s delivered\n", r.Received, r.DeliveredPPS, r.DeliveredGbps)
	fmt.Fprintf(tw, "lost\t%d\t%.3f%%\n", r.Lost, r.LossPercent)
	fmt.Fprintf(tw, "duplicates\t%d\t\n", r.Duplicates)
	fmt.Fprintf(tw, "reordered\t%d\t\n", r.Reordered)
	if r.SendErrors > 0 {
		fmt.Fprintf(tw, "send errors\t%d\t%s\n", r.SendErrors, r.FirstError)
	}
	if r.Foreign > 0 {
		fmt.Fprintf(tw, "foreign\t%d\t\n", r.Foreign)
	}
	fmt.Fprintf(tw, "rtt (µs)\tp50 %.1f\tp90 %.1f  p99 %.1f  p99.9 %.1f\n", r.RTTP50, r.RTTP90, r.RTTP99, r.RTTP999)
	fmt.Fprintf(tw, "\tmin %.1f\tmean %.1f  max %.1f\n", r.RTTMin, r.RTTMean, r.RTTMax)
	return tw.Flush()
}

// WriteSeriesCSV writes the time series as CSV with a header line:
// t_s,sent,received,lost,rtt_max_us,rtt_mean_us.
func (r *Report) WriteSeriesCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"t_s", "sent", "received", "lost", "rtt_max_us", "rtt_mean_us"})
	for _, iv := range r.Series {
		_ = cw.Write([]string{
			strconv.FormatFloat(iv.Start.Seconds(), 'f', 3, 64),
			strconv.FormatUint(iv.Sent, 10),
			strconv.FormatUint(iv.Received, 10),
			strconv.FormatUint(iv.Lost, 10),
			strconv.FormatFloat(iv.RTTMax, 'f', 1, 64),
			strconv.FormatFloat(iv.RTTMean, 'f', 1, 64),
		})
	}
	cw.Flush()
	return cw.Error()
}

// WriteTable prints the sink's counters as a short human-readable table.
func (s SinkStats) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "sink\t%s\tmode %s, %.1f s, %d runs\n", s.Listen, s.Mode, s.Duration.Seconds(), s.Runs)
	fmt.Fprintf(tw, "handshakes\t%d\tinitiations %d, responses %d\n", s.Handshakes, s.Initiations, s.Responses)
	fmt.Fprintf(tw, "received\t%d\t\n", s.Received)
	fmt.Fprintf(tw, "unique\t%d\t\n", s.Unique)
	fmt.Fprintf(tw, "duplicates\t%d\t\n", s.Duplicates)
	fmt.Fprintf(tw, "reordered\t%d\t\n", s.Reordered)
	fmt.Fprintf(tw, "echoed\t%d\t\n", s.Echoed)
	if s.EchoErrors > 0 {
		fmt.Fprintf(tw, "echo errors\t%d\t%s\n", s.EchoErrors, s.FirstError)
	}
	if n := s.Foreign + s.Truncated + s.OutOfRange; n > 0 {
		fmt.Fprintf(tw, "dropped\t%d\t%d foreign, %d truncated, %d out of range\n", n, s.Foreign, s.Truncated, s.OutOfRange)
	}
	return tw.Flush()
}
