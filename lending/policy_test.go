package lending

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const testPolicy = `{
  "name": "t",
  "mode": "decision",
  "min_score": 250000,
  "amount": "100.00",
  "installments": 3,
  "interval": 30,
  "max_open_loans": 2
}
`

func TestParsePolicy_TermsSplitAndSchedule(t *testing.T) {
	p, err := ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if p.Cents() != 10000 || p.MinScore != 250000 || p.Mode != ModeDecision {
		t.Fatalf("policy %+v", p)
	}
	if got := p.InstallmentAmounts(); !reflect.DeepEqual(got, []uint64{3333, 3333, 3334}) {
		t.Fatalf("installments %v", got)
	}
	if got := p.Schedule(100); !reflect.DeepEqual(got, []uint64{130, 160, 190}) {
		t.Fatalf("schedule %v", got)
	}
	if h := Hash([]byte(testPolicy)); h != sha256.Sum256([]byte(testPolicy)) {
		t.Fatal("hash is not SHA-256 of the bytes")
	}
	if got := Split(7, 2); !reflect.DeepEqual(got, []uint64{3, 4}) || Split(5, 0) != nil {
		t.Fatalf("split %v", got)
	}
}

func TestParsePolicy_RefusesBadTerms(t *testing.T) {
	for name, edit := range map[string][2]string{
		"unknown field":      {`"name": "t",`, `"name": "t", "rate": 5,`},
		"mode":               {`"decision"`, `"maybe"`},
		"name":               {`"name": "t"`, `"name": ""`},
		"amount decimals":    {`"100.00"`, `"1.005"`},
		"amount zero":        {`"100.00"`, `"0"`},
		"no installments":    {`"installments": 3`, `"installments": 0`},
		"many installments":  {`"installments": 3`, `"installments": 25`},
		"tiny installments":  {`"100.00"`, `"0.02"`},
		"short interval":     {`"interval": 30`, `"interval": 7`},
		"no open loans":      {`"max_open_loans": 2`, `"max_open_loans": 0`},
		"min_score too high": {`"min_score": 250000`, `"min_score": 4294967296`},
		"not JSON":           {`{`, `[`},
	} {
		b := strings.Replace(testPolicy, edit[0], edit[1], 1)
		if _, err := ParsePolicy([]byte(b)); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestResolvePolicy_FileURLOrHash(t *testing.T) {
	want := Hash([]byte(testPolicy))
	path := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(path, []byte(testPolicy), 0o644)
	p, h, err := ResolvePolicy(context.Background(), path)
	if err != nil || p == nil || h != want {
		t.Fatalf("file: %v %v", p, err)
	}
	p, h, err = ResolvePolicy(context.Background(), hex.EncodeToString(want[:]))
	if err != nil || p != nil || h != want {
		t.Fatalf("hash: %v %v", p, err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/policy.json" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(testPolicy))
	}))
	defer srv.Close()
	p, h, err = ResolvePolicy(context.Background(), srv.URL+"/policy.json")
	if err != nil || p == nil || h != want {
		t.Fatalf("url: %v %v", p, err)
	}
	if _, _, err := ResolvePolicy(context.Background(), srv.URL+"/missing"); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("missing url: %v", err)
	}
	if _, _, err := ResolvePolicy(context.Background(), filepath.Join(t.TempDir(), "nope.json")); err == nil || !strings.Contains(err.Error(), "policy file") {
		t.Fatalf("missing file: %v", err)
	}
}
