package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Fleet are the instruments of fleet baselines through etcd (#17).
type Fleet struct {
	connected prometheus.Gauge
	nodes     *prometheus.GaugeVec
}

// NewFleet registers the fleet's instruments on reg.
func NewFleet(reg prometheus.Registerer) (*Fleet, error) {
	f := &Fleet{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cagewatch_fleet_connected",
			Help: "1 while the last etcd call succeeded; 0 while etcd is out of reach and the agent learns locally.",
		}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cagewatch_fleet_nodes", Help: "Nodes whose learning is in the image's fleet baseline.",
		}, []string{"image"}),
	}
	for _, c := range []prometheus.Collector{f.connected, f.nodes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering fleet metrics: %w", err)
		}
	}
	return f, nil
}

// SetConnected records whether etcd answers.
func (f *Fleet) SetConnected(ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	f.connected.Set(v)
}

// SetNodes records how many nodes an image's fleet baseline counts.
func (f *Fleet) SetNodes(image string, nodes int) { f.nodes.WithLabelValues(image).Set(float64(nodes)) }
