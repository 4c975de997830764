package sensortest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/cagewatch/cagewatch/profiler/sensor"
)

// fakeTB records a skip or a failure and, like testing.T, stops the calling
// goroutine there.
type fakeTB struct {
	testing.TB // nil: any other method panics
	skipped    bool
	failed     bool
	msg        string
	returned   bool // the helper returned rather than stopping the test
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn with a fake TB on its own goroutine, as the testing package runs a test.
func run(fn func(testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
		f.returned = true
	}()
	<-done
	return f
}

func TestSkipOrFail(t *testing.T) {
	tests := []struct {
		name     string
		require  string
		wantFail bool
	}{
		{name: "unset skips", require: ""},
		{name: "set fails", require: "1", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(requireEnv, tt.require)
			f := run(func(tb testing.TB) { SkipOrFail(tb, "bpftool", "counting map entries (%s)", "apt-get install bpftool") })
			if f.returned {
				t.Fatal("SkipOrFail returned; it must stop the test")
			}
			if f.failed != tt.wantFail || f.skipped == tt.wantFail {
				t.Fatalf("failed=%v skipped=%v, want failed=%v (message %q)", f.failed, f.skipped, tt.wantFail, f.msg)
			}
			for _, want := range []string{"bpftool", "not available", "counting map entries (apt-get install bpftool)"} {
				if !strings.Contains(f.msg, want) {
					t.Errorf("message %q does not say %q", f.msg, want)
				}
			}
			if tt.wantFail && !strings.Contains(f.msg, requireEnv) {
				t.Errorf("failure %q does not name %s", f.msg, requireEnv)
			}
		})
	}
}

func TestSkipOrFailLoad(t *testing.T) {
	_, btfErr := os.Stat(kernelBTF)
	capable := os.Geteuid() == 0 && btfErr == nil
	tests := []struct {
		name     string
		err      error
		require  string
		wantSkip bool   // on a machine that is root and has BTF; elsewhere every unset case skips
		feature  string // the skip names it
	}{
		{name: "nil error", err: nil},
		{name: "unsupported, unset", err: fmt.Errorf("loading: %w", ebpf.ErrNotSupported), wantSkip: true, feature: "tp_btf/raw_tp programs or ring buffers"},
		{name: "unsupported, set", err: fmt.Errorf("loading: %w", ebpf.ErrNotSupported), require: "1"},
		{name: "other error, unset", err: errors.New("verifier: invalid access")},
		{name: "other error, set", err: errors.New("verifier: invalid access"), require: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(requireEnv, tt.require)
			f := run(func(tb testing.TB) { SkipOrFailLoad(tb, tt.err) })
			switch {
			case tt.err == nil:
				if !f.returned || f.failed || f.skipped {
					t.Fatalf("nil error: returned=%v failed=%v skipped=%v (%q), want a plain return", f.returned, f.failed, f.skipped, f.msg)
				}
			case f.returned:
				t.Fatal("SkipOrFailLoad returned on an error; it must stop the test")
			case tt.require != "":
				if !f.failed || capable && !strings.Contains(f.msg, tt.err.Error()) {
					t.Fatalf("with %s set: failed=%v (%q), want a failure with the error", requireEnv, f.failed, f.msg)
				}
			case !capable:
				if !f.skipped || !strings.Contains(f.msg, "root not available") && !strings.Contains(f.msg, "kernel BTF not available") {
					t.Fatalf("without root or BTF: skipped=%v (%q), want a skip naming root or kernel BTF", f.skipped, f.msg)
				}
			case tt.wantSkip:
				if !f.skipped || !strings.Contains(f.msg, tt.feature+" not available") || !strings.Contains(f.msg, tt.err.Error()) {
					t.Fatalf("skipped=%v (%q), want a skip naming %q and the error", f.skipped, f.msg, tt.feature)
				}
			default:
				if !f.failed || !strings.Contains(f.msg, tt.err.Error()) {
					t.Fatalf("failed=%v (%q), want a failure with the error", f.failed, f.msg)
				}
			}
		})
	}
}

// TestKernelBTFIsSensors: RequireBPF must look where the sensor loads BTF from.
func TestKernelBTFIsSensors(t *testing.T) {
	if kernelBTF != sensor.BTFPath {
		t.Errorf("kernelBTF = %q, sensor.BTFPath = %q", kernelBTF, sensor.BTFPath)
	}
}
