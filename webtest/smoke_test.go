package webtest

import (
	"strings"
	"testing"
)

// TestSmoke_PagesLoad opens the dashboard and the wallet page of validator 0:
// both are served (HTTP 200) with a title.
func TestSmoke_PagesLoad(t *testing.T) {
	p := newPage(t, "smoke")
	tn := chain(t)
	for _, path := range []string{"/", "/wallet"} {
		url := tn.api[0] + path
		if status := p.open(url); status != 200 {
			t.Fatalf("GET %s in the browser: HTTP %d", url, status)
		}
		title := eval[string](p, `document.title`)
		if strings.TrimSpace(title) == "" {
			t.Errorf("%s has no title", url)
		}
		t.Logf("%s: %q", url, title)
	}
}
