// Package web holds the station's browser files, embedded in the binary:
// the client SDK (/sdk/sscard.js), the technician console (/console/) and
// the example counter page (/examples/counter/). Handler serves them; the
// API's router mounts it next to /v1 (behind the same Host check).
//
// Nothing here loads from outside: every page's Content-Security-Policy
// allows its own origin and, for the API, the loopback station only.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed sscard.js console examples
var files embed.FS

// FS is the embedded tree (sscard.js, console/, examples/).
func FS() fs.FS { return files }

// Prefixes Handler serves.
var Prefixes = []string{"/sdk/", "/console", "/examples/"}

// csp for the pages: scripts, styles and images from this origin only; the
// API on this origin or a loopback station; no frames, no forms elsewhere.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' http://127.0.0.1:* http://localhost:*; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the embedded files:
//
//	/sdk/sscard.js          the SDK (any origin may import it: it is public code)
//	/console/…              the technician console (/console redirects)
//	/examples/counter/…     the example counter page
func Handler() http.Handler {
	sub := http.FileServer(http.FS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		dir := strings.HasSuffix(r.URL.Path, "/")
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		switch {
		case p == "/sdk/sscard.js":
			// A public static file: a counter page on another origin may
			// import it as a module (module scripts need CORS).
			h.Set("Access-Control-Allow-Origin", "*")
			serveFile(sub, w, r, "/sscard.js")
		case (p == "/console" || p == "/examples/counter") && !dir:
			http.Redirect(w, r, p+"/", http.StatusMovedPermanently)
		case p == "/console", p == "/examples/counter", strings.HasPrefix(p, "/console/"), strings.HasPrefix(p, "/examples/counter/"):
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Frame-Options", "DENY")
			if dir {
				p += "/"
			}
			serveFile(sub, w, r, p)
		default:
			http.NotFound(w, r)
		}
	})
}

func serveFile(fsrv http.Handler, w http.ResponseWriter, r *http.Request, p string) {
	r2 := r.Clone(r.Context())
	r2.URL.Path = p
	r2.URL.RawPath = ""
	fsrv.ServeHTTP(w, r2)
}
