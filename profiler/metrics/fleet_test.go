package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFleetMetrics(t *testing.T) {
	m := New(&fakeSource{}, "test")
	f, err := NewFleet(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	f.SetConnected(true)
	f.SetNodes("e2e/web:1", 3)
	f.SetNodes("e2e/db:2", 1)
	f.SetConnected(false) // quorum lost
	want := `
# HELP cagewatch_fleet_connected 1 while the last etcd call succeeded; 0 while etcd is out of reach and the agent learns locally.
# TYPE cagewatch_fleet_connected gauge
cagewatch_fleet_connected 0
# HELP cagewatch_fleet_nodes Nodes whose learning is in the image's fleet baseline.
# TYPE cagewatch_fleet_nodes gauge
cagewatch_fleet_nodes{image="e2e/db:2"} 1
cagewatch_fleet_nodes{image="e2e/web:1"} 3
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "cagewatch_fleet_connected", "cagewatch_fleet_nodes"); err != nil {
		t.Error(err)
	}
	if _, err := NewFleet(m.Registry()); err == nil || !strings.Contains(err.Error(), "fleet metrics") {
		t.Errorf("registering twice: %v", err)
	}
}
