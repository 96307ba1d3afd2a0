package version

import (
	"runtime/debug"
	"testing"
)

func TestInfo_Sources(t *testing.T) {
	checkout := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "b631093a1b2c3d4e5f60718293a4b5c6d7e8f901"}, {Key: "vcs.modified", Value: "true"}}}
	tagged := &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}
	stamped := &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203072944-b631093dc968+dirty"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "b631093dc9684728f85f3b2714820565e43e5141"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		name     string
		bi       *debug.BuildInfo
		override string
		version  string
		commit   string
	}{
		{"no build info", nil, "", "devel", "unknown"},
		{"checkout", checkout, "", "devel-b631093a1b2c+dirty", "b631093a1b2c3d4e5f60718293a4b5c6d7e8f901+dirty"},
		{"module version", tagged, "", "v0.3.0", "unknown"},
		{"pseudo-version of a checkout", stamped, "", "devel-b631093dc968+dirty", "b631093dc9684728f85f3b2714820565e43e5141+dirty"},
		{"ldflags override wins", checkout, "v9.9.9", "v9.9.9", "b631093a1b2c3d4e5f60718293a4b5c6d7e8f901+dirty"},
		{"empty main version", &debug.BuildInfo{}, "", "devel", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := info(tc.bi, tc.override)
			if in.Version != tc.version || in.Commit != tc.commit {
				t.Fatalf("version %q commit %q, want %q %q", in.Version, in.Commit, tc.version, tc.commit)
			}
			if in.Protocol != Protocol || in.Go == "" {
				t.Fatalf("protocol %d go %q", in.Protocol, in.Go)
			}
		})
	}
}

func TestGet_IsConsistent(t *testing.T) {
	if Get().Version == "" || Version() != Get().Version {
		t.Fatalf("Version() %q, Get() %+v", Version(), Get())
	}
}
