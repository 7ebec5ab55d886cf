// Package metrics serves counters in the Prometheus text exposition format (version
// 0.0.4) over HTTP, gathering them from collector functions at scrape time, so the
// datapath only keeps its own counters and never pays for metrics.
package metrics

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Sample is one value of a metric with its labels, as label name/value pairs.
type Sample struct {
	Labels []string // name1, value1, name2, value2, ...
	Value  float64
}

// Family is a metric with its samples.
type Family struct {
	Name, Help string
	Type       string // counter or gauge
	Samples    []Sample
}

// Collector appends the families it knows to fams.
type Collector func(fams []Family) []Family

// Registry holds collectors. Safe for concurrent use.
type Registry struct {
	mu         sync.Mutex
	collectors []Collector
}

// Register adds a collector.
func (r *Registry) Register(c Collector) {
	r.mu.Lock()
	r.collectors = append(r.collectors, c)
	r.mu.Unlock()
}

// Gather runs every collector and returns the families sorted by name, samples of
// families with the same name merged.
func (r *Registry) Gather() []Family {
	r.mu.Lock()
	cs := append([]Collector(nil), r.collectors...)
	r.mu.Unlock()
	var fams []Family
	for _, c := range cs {
		fams = c(fams)
	}
	byName := map[string]int{}
	var out []Family
	for _, f := range fams {
		if i, ok := byName[f.Name]; ok {
			out[i].Samples = append(out[i].Samples, f.Samples...)
			continue
		}
		byName[f.Name] = len(out)
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ServeHTTP writes the exposition.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	for _, f := range r.Gather() {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escapeHelp(f.Help), f.Name, f.Type)
		for _, s := range f.Samples {
			bw.WriteString(f.Name)
			if len(s.Labels) > 1 {
				bw.WriteByte('{')
				for i := 0; i+1 < len(s.Labels); i += 2 {
					if i > 0 {
						bw.WriteByte(',')
					}
					bw.WriteString(s.Labels[i])
					bw.WriteString(`="`)
					bw.WriteString(escapeLabel(s.Labels[i+1]))
					bw.WriteByte('"')
				}
				bw.WriteByte('}')
			}
			bw.WriteByte(' ')
			bw.WriteString(strconv.FormatFloat(s.Value, 'g', -1, 64))
			bw.WriteByte('\n')
		}
	}
	bw.Flush()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
