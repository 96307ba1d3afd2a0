package main

import (
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/zkbank/zkbank/version"
)

func TestVersionCommand(t *testing.T) {
	code, out, errs := zk(t, "version")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	in := version.Get()
	for _, want := range []string{"version   " + in.Version + "\n", "protocol  " + strconv.Itoa(version.Protocol) + "\n", "go        " + runtime.Version() + "\n", "commit    " + in.Commit + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, errs = zk(t, "version", "--json")
	if code != 0 || errs != "" {
		t.Fatalf("--json: exit %d, stderr %q", code, errs)
	}
	var got version.Info
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if got != in || got.Protocol != version.Protocol {
		t.Fatalf("--json %+v, want %+v", got, in)
	}

	code, _, errs = zk(t, "version", "extra")
	oneErrorLine(t, code, errs, 2, "unknown command")
}
