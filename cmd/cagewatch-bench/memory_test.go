package main

import "testing"

func TestBPFMapResident(t *testing.T) {
	smaps := `55d0c0000000-55d0c0a00000 r-xp 00000000 fe:01 123 /usr/bin/cagewatch
Size:              10240 kB
Rss:                9000 kB
7f0000000000-7f0001e00000 rw-s 00000000 00:0f 2050 anon_inode:bpf-map
Size:              30720 kB
Rss:               29892 kB
VmFlags: rd wr sh mr mw me ms sd
7f0002000000-7f0002800000 r--s 00000000 00:0f 2051 anon_inode:bpf-map
Rss:                8196 kB
7f0003000000-7f0003100000 rw-p 00000000 00:00 0 
Rss:                1000 kB
`
	if got, want := bpfMapResident(smaps), uint64(29892+8196)<<10; got != want {
		t.Errorf("bpfMapResident = %d, want %d (the two bpf-map mappings only)", got, want)
	}
	m := agentMemory{rss: 50 << 20, bpfMaps: 38 << 20}
	if got := m.own(); got != 12<<20 {
		t.Errorf("own = %d, want %d", got, 12<<20)
	}
}
