// Package apitest checks stationd's answers against its OpenAPI document,
// for the API's unit tests and the end-to-end tests that drive the real
// daemon: wrap the client's transport and every response is validated.
//
//	doc, _ := io.ReadAll(GET /v1/openapi.json)   // or api.OpenAPIJSON()
//	v, _ := apitest.New(doc)
//	client := &http.Client{Transport: v.Transport(nil, func(err error) { t.Error(err) })}
//
// It does not import station/api, so that package's own tests can use it.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

var registerOnce sync.Once

// Validator holds a loaded, validated OpenAPI document.
type Validator struct {
	Doc    *openapi3.T
	router routers.Router
	server *url.URL
}

// New loads doc (JSON) and checks it is a valid OpenAPI 3 document.
func New(doc []byte) (*Validator, error) {
	registerOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	})
	d, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("apitest: load: %w", err)
	}
	if err := d.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("apitest: the document is not valid OpenAPI: %w", err)
	}
	if len(d.Servers) == 0 {
		return nil, errors.New("apitest: the document names no server")
	}
	su, err := url.Parse(d.Servers[0].URL)
	if err != nil {
		return nil, fmt.Errorf("apitest: server URL: %w", err)
	}
	r, err := legacy.NewRouter(d)
	if err != nil {
		return nil, fmt.Errorf("apitest: router: %w", err)
	}
	return &Validator{Doc: d, router: r, server: su}, nil
}

// Response checks one response to r: against its operation when r names
// one, otherwise (an unknown path or method) as a problem+json Problem.
// Event streams are checked by status and headers only.
func (v *Validator) Response(r *http.Request, status int, h http.Header, body []byte) error {
	vr := r.Clone(context.Background())
	// The document's server is the default address; match whatever port
	// the station under test listens on.
	vr.URL.Scheme, vr.URL.Host, vr.Host = v.server.Scheme, v.server.Host, v.server.Host
	vr.Body = http.NoBody
	route, params, err := v.router.FindRoute(vr)
	if err != nil {
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			return fmt.Errorf("%s %s: unrouted answer %d is %q, not problem+json", r.Method, r.URL.Path, status, ct)
		}
		var x any
		if err := json.Unmarshal(body, &x); err != nil {
			return fmt.Errorf("%s %s: problem body: %w", r.Method, r.URL.Path, err)
		}
		if err := v.Doc.Components.Schemas["Problem"].Value.VisitJSON(x); err != nil {
			return fmt.Errorf("%s %s: problem body against the schema: %w", r.Method, r.URL.Path, err)
		}
		return nil
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	if strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
		opts.ExcludeResponseBody = true
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s -> %d does not match the OpenAPI document: %w (body %.300s)", r.Method, r.URL.Path, status, err, body)
	}
	return nil
}

// Transport validates every response that passes through it and hands
// it on unchanged; report gets each mismatch (e.g. t.Error). Event
// streams are handed on unread.
func (v *Validator) Transport(base http.RoundTripper, report func(error)) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		res, err := base.RoundTrip(r)
		if err != nil {
			return res, err
		}
		if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
			if err := v.Response(r, res.StatusCode, res.Header, nil); err != nil {
				report(err)
			}
			return res, nil
		}
		body, rerr := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			return res, rerr
		}
		if err := v.Response(r, res.StatusCode, res.Header, body); err != nil {
			report(err)
		}
		return res, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
