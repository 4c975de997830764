package model

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

type scoreGen struct {
	r     *rand.Rand
	rates []float64
	names []string
	noise string
	amp   float64
	i     int
}

var probeNames = []string{"read", "write", "openat", "close", "futex", "epoll_wait", "mmap", "munmap",
	"recvfrom", "sendto", "clock_gettime", "getpid", "nanosleep", "accept4", "fstat"}

func newScoreGen(seed uint64, noise string, amp float64) *scoreGen {
	g := &scoreGen{r: rand.New(rand.NewPCG(seed, 7)), noise: noise, amp: amp, names: probeNames}
	for i := range probeNames {
		g.rates = append(g.rates, 2000/math.Pow(1.6, float64(i)))
	}
	return g
}

func (g *scoreGen) window() Window {
	c := map[string]uint64{}
	for i, n := range g.names {
		r := g.rates[i]
		var x float64
		switch g.noise {
		case "uniform":
			x = r * (1 + g.amp*(2*g.r.Float64()-1))
		case "gauss":
			x = r * (1 + g.amp*g.r.NormFloat64())
		case "lognormal":
			x = r * math.Exp(g.amp*g.r.NormFloat64()-g.amp*g.amp/2)
		case "poisson":
			// normal approx with sd sqrt(r) plus multiplicative
			x = r*(1+g.amp*g.r.NormFloat64()) + math.Sqrt(r)*g.r.NormFloat64()
		}
		if x > 0 {
			c[n] = uint64(math.Round(x))
		}
	}
	w := Window{Container: Container{ID: "c1", Runtime: RuntimeDocker, Image: testImage, ImageTag: testTag},
		Start: testT0.Add(time.Duration(g.i) * time.Second), Duration: time.Second, Counts: c}
	g.i++
	return w
}

func TestProbeCalibration(t *testing.T) {
	for _, nm := range []struct {
		noise string
		amp   float64
	}{{"uniform", 0.1}, {"gauss", 0.1}, {"gauss", 0.3}, {"lognormal", 0.3}, {"lognormal", 0.6}, {"poisson", 0.05}, {"poisson", 0.2}} {
		for seed := uint64(1); seed <= 3; seed++ {
			g := newScoreGen(seed, nm.noise, nm.amp)
			b := NewBaseline(testImage, testTag, "")
			for range 300 {
				b.AddWindow(g.window(), 0)
			}
			scores := make([]float64, 20000)
			for i := range scores {
				w := g.window()
				scores[i] = Score(b, w.Counts, 1).Value
			}
			for _, budget := range []float64{1.44, 4, 14.4} {
				th := b.Calibrate(budget, 60)
				n := 0
				for _, s := range scores {
					if s > th.Value {
						n++
					}
				}
				t.Logf("%s %.2f seed %d budget %.2f p=%.4f thr=%.2f obs=%.5f ratio=%.2f", nm.noise, nm.amp, seed, budget, th.Exceedance, th.Value, float64(n)/20000, float64(n)/20000/th.Exceedance)
			}
		}
	}
}
