package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/pushd/pushd"
	"go.yaml.in/yaml/v3"
)

//go:embed docs.tmpl
var docsTemplateText string

var docsTemplate = template.Must(template.New("docs").Parse(docsTemplateText))

// The API description, served as written at /openapi.yaml and rendered once
// into /docs: one source of truth, embedded at build time.
var (
	docsOnce sync.Once
	docsHTML []byte
	docsErr  error
)

func (s *Server) registerDocs() {
	s.handle("GET", "/openapi.yaml", staticFile("openapi.yaml", pushd.OpenAPI))
	s.handle("GET", "/docs", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		docsOnce.Do(func() { docsHTML, docsErr = renderDocs(pushd.OpenAPI) })
		if docsErr != nil {
			s.log.Error("rendering /docs from openapi.yaml failed", "err", docsErr)
			writeError(w, http.StatusInternalServerError, codeInternal, "the API description could not be rendered")
			return
		}
		staticFile("docs.html", docsHTML).ServeHTTP(w, r)
	}))
}

// spec is openapi.yaml as YAML nodes, which keep the order it was written in.
type spec struct{ root *yaml.Node }

// get returns the value under key of mapping n (following a $ref), or nil.
func (sp spec) get(n *yaml.Node, key string) *yaml.Node {
	n = sp.deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func (sp spec) str(n *yaml.Node, key string) string {
	if v := sp.get(n, key); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// pairs lists the keys and values of mapping n in document order.
func (sp spec) pairs(n *yaml.Node) (keys []string, vals []*yaml.Node) {
	n = sp.deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
		vals = append(vals, n.Content[i+1])
	}
	return keys, vals
}

// refOf is the local $ref of n ("#/components/…"), or "".
func refOf(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "$ref" {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// deref follows $refs within the document (at most a few hops).
func (sp spec) deref(n *yaml.Node) *yaml.Node {
	for range 8 {
		ref := refOf(n)
		if ref == "" {
			return n
		}
		n = sp.root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
			var next *yaml.Node
			for i := 0; n != nil && n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					next = n.Content[i+1]
				}
			}
			n = next
		}
	}
	return n
}

func (sp spec) list(n *yaml.Node) []*yaml.Node {
	n = sp.deref(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

// docPage is what the template renders.
type docPage struct {
	Title, Version, Summary string
	Description             template.HTML
	Ops                     []docOp
	Schemas                 []docSchema
}

type docOp struct {
	Method, Path, Anchor, Summary string
	Description                   template.HTML
	Auth                          string
	Params                        []docParam
	Body                          template.HTML
	BodyRequired                  bool
	Responses                     []docResponse
	Curl                          string
}

type docParam struct {
	Name, In, Description string
	Required              bool
	Schema                template.HTML
}

type docResponse struct {
	Status, Description string
	Error               bool
	Headers             []string
	Schema              template.HTML
}

type docSchema struct {
	Name, Description string
	Schema            template.HTML
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// renderDocs turns openapi.yaml into the /docs page.
func renderDocs(src []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	if len(doc.Content) != 1 {
		return nil, fmt.Errorf("openapi.yaml: not one YAML document")
	}
	sp := spec{root: doc.Content[0]}
	info := sp.get(sp.root, "info")
	page := docPage{
		Title: sp.str(info, "title"), Version: sp.str(info, "version"), Summary: sp.str(info, "summary"),
		Description: markdownish(sp.str(info, "description")),
	}
	defaultSecurity := sp.get(sp.root, "security")
	paths, items := sp.pairs(sp.get(sp.root, "paths"))
	for i, path := range paths {
		for _, m := range httpMethods {
			op := sp.get(items[i], m)
			if op == nil {
				continue
			}
			page.Ops = append(page.Ops, sp.operation(strings.ToUpper(m), path, op, defaultSecurity))
		}
	}
	names, schemas := sp.pairs(sp.get(sp.get(sp.root, "components"), "schemas"))
	for i, name := range names {
		page.Schemas = append(page.Schemas, docSchema{Name: name, Description: sp.str(schemas[i], "description"), Schema: sp.schemaHTML(schemas[i], 0)})
	}
	var buf bytes.Buffer
	if err := docsTemplate.Execute(&buf, page); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (sp spec) operation(method, path string, op, defaultSecurity *yaml.Node) docOp {
	d := docOp{
		Method: method, Path: path, Anchor: sp.str(op, "operationId"),
		Summary: sp.str(op, "summary"), Description: markdownish(sp.str(op, "description")),
	}
	security := sp.get(op, "security")
	if security == nil {
		security = defaultSecurity
	}
	var schemes []string
	for _, req := range sp.list(security) {
		keys, _ := sp.pairs(req)
		if len(keys) == 0 {
			schemes = append(schemes, "none")
		}
		schemes = append(schemes, keys...)
	}
	switch {
	case len(schemes) == 0:
		d.Auth = "none"
	default:
		d.Auth = strings.Join(schemes, " or ")
	}
	for _, p := range sp.list(sp.get(op, "parameters")) {
		d.Params = append(d.Params, docParam{
			Name: sp.str(p, "name"), In: sp.str(p, "in"), Description: sp.str(p, "description"),
			Required: sp.str(p, "required") == "true", Schema: sp.schemaHTML(sp.get(p, "schema"), 0),
		})
	}
	var example any
	if body := sp.get(op, "requestBody"); body != nil {
		d.BodyRequired = sp.str(body, "required") == "true"
		if schema := sp.get(sp.get(sp.get(body, "content"), "application/json"), "schema"); schema != nil {
			d.Body = sp.schemaHTML(schema, 0)
			example = sp.example(schema, "", 0)
		}
	}
	codes, resps := sp.pairs(sp.get(op, "responses"))
	for i, code := range codes {
		r := docResponse{Status: code, Description: sp.str(resps[i], "description"), Error: code >= "400"}
		hdrs, _ := sp.pairs(sp.get(resps[i], "headers"))
		r.Headers = hdrs
		_, contents := sp.pairs(sp.get(resps[i], "content"))
		if len(contents) > 0 {
			if schema := sp.get(contents[0], "schema"); schema != nil && sp.str(schema, "type") != "string" {
				r.Schema = sp.schemaHTML(schema, 0)
			}
		}
		d.Responses = append(d.Responses, r)
	}
	streams := sp.get(sp.get(sp.get(sp.get(op, "responses"), "200"), "content"), "text/event-stream") != nil
	d.Curl = curlExample(method, path, d.Auth, example, d.BodyRequired, streams)
	return d
}

// curlExample is a command line that calls the route, with $PUSHD the
// server's origin and $KEY (or $TOKEN) the credential.
func curlExample(method, path, auth string, body any, bodyRequired, streams bool) string {
	path = regexp.MustCompile(`\{(\w+)\}`).ReplaceAllString(path, "alice")
	var b strings.Builder
	b.WriteString("curl")
	switch {
	case path == "/sse":
		b.WriteString(` -N "$PUSHD/sse?access_token=$TOKEN"`)
		return b.String()
	case path == "/ws":
		return `websocat "ws://${PUSHD#*://}/ws?access_token=$TOKEN"   # or any WebSocket client`
	case method != "GET":
		b.WriteString(" -X " + method)
	case streams:
		b.WriteString(" -N")
	}
	b.WriteString(` "$PUSHD` + path + `"`)
	if strings.Contains(auth, "apiKey") {
		b.WriteString(` \` + "\n  -H \"Authorization: Bearer $KEY\"")
	}
	if body != nil && bodyRequired {
		data, _ := json.Marshal(body)
		b.WriteString(` \` + "\n  -H 'Content-Type: application/json' -d '" + strings.ReplaceAll(string(data), "'", `'\''`) + "'")
	}
	return b.String()
}

// exampleValues are the values curl examples use for well-known fields.
var exampleValues = map[string]any{
	"userId": "alice", "title": "Hello", "body": "from pushd", "widgetId": "revenue",
	"tableId": "orders", "rowId": "42", "reason": "maintenance", "entry": map[string]string{"action": "login"},
	"data": map[string]int{"value": 42},
}

// example builds a value that satisfies schema: required properties only,
// the first of enums and alternatives.
func (sp spec) example(schema *yaml.Node, name string, depth int) any {
	if v, ok := exampleValues[name]; ok {
		return v
	}
	schema = sp.deref(schema)
	if schema == nil || depth > 6 {
		return nil
	}
	if c := sp.get(schema, "const"); c != nil {
		return c.Value
	}
	if ex := sp.list(sp.get(schema, "examples")); len(ex) > 0 {
		return ex[0].Value
	}
	if enum := sp.list(sp.get(schema, "enum")); len(enum) > 0 {
		return enum[0].Value
	}
	if alts := sp.list(sp.get(schema, "oneOf")); len(alts) > 0 {
		return sp.example(alts[0], name, depth+1)
	}
	switch sp.str(schema, "type") {
	case "array":
		return []any{sp.example(sp.get(schema, "items"), "", depth+1)}
	case "integer", "number":
		return 0
	case "boolean":
		return false
	case "string":
		return "string"
	}
	obj := map[string]any{}
	merge := func(s *yaml.Node) {
		for _, r := range sp.list(sp.get(s, "required")) {
			obj[r.Value] = sp.example(sp.get(sp.get(s, "properties"), r.Value), r.Value, depth+1)
		}
	}
	for _, part := range sp.list(sp.get(schema, "allOf")) {
		merge(sp.deref(part))
	}
	merge(schema)
	return obj
}

// schemaHTML is a compact outline of schema: types, required fields,
// constraints and descriptions; component schemas are linked, not inlined.
func (sp spec) schemaHTML(schema *yaml.Node, depth int) template.HTML {
	var b strings.Builder
	sp.writeSchema(&b, schema, depth)
	return template.HTML(b.String())
}

func (sp spec) writeSchema(b *strings.Builder, schema *yaml.Node, depth int) {
	esc := template.HTMLEscapeString
	if ref := refOf(schema); strings.HasPrefix(ref, "#/components/schemas/") {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		fmt.Fprintf(b, `<a class="type" href="#schema-%s">%s</a>`, esc(name), esc(name))
		return
	}
	schema = sp.deref(schema)
	if schema == nil {
		b.WriteString(`<span class="type">any</span>`)
		return
	}
	if depth > 8 {
		b.WriteString("…")
		return
	}
	typ := sp.str(schema, "type")
	if c := sp.get(schema, "const"); c != nil {
		fmt.Fprintf(b, `<code>%s</code>`, esc(strconv.Quote(c.Value)))
	}
	// A single allOf is how a request body closes a component's fields:
	// show the fields themselves.
	if alts := sp.list(sp.get(schema, "allOf")); len(alts) == 1 {
		sp.writeSchema(b, sp.deref(alts[0]), depth)
	}
	for _, combo := range []string{"oneOf", "anyOf", "allOf"} {
		alts := sp.list(sp.get(schema, combo))
		if len(alts) == 0 || (combo == "allOf" && len(alts) == 1) {
			continue
		}
		label := map[string]string{"oneOf": "one of", "anyOf": "any of", "allOf": "all of"}[combo]
		fmt.Fprintf(b, `<span class="type">%s</span><ol>`, label)
		for _, alt := range alts {
			b.WriteString("<li>")
			sp.writeSchema(b, alt, depth+1)
			b.WriteString("</li>")
		}
		b.WriteString("</ol>")
	}
	switch typ {
	case "array":
		b.WriteString(`<span class="type">array</span> of `)
		sp.writeSchema(b, sp.get(schema, "items"), depth+1)
	case "":
		if sp.get(schema, "properties") == nil && sp.get(schema, "oneOf") == nil && sp.get(schema, "allOf") == nil && sp.get(schema, "const") == nil {
			b.WriteString(`<span class="type">any JSON</span>`)
		}
	default:
		fmt.Fprintf(b, `<span class="type">%s</span>`, esc(typ))
	}
	b.WriteString(constraints(sp, schema))
	if d := sp.str(schema, "description"); d != "" && depth > 0 {
		fmt.Fprintf(b, ` <span class="desc">— %s</span>`, inlineMarkdown(d))
	}
	names, props := sp.pairs(sp.get(schema, "properties"))
	if len(names) == 0 {
		return
	}
	required := map[string]bool{}
	for _, r := range sp.list(sp.get(schema, "required")) {
		required[r.Value] = true
	}
	b.WriteString(`<ul class="props">`)
	for i, name := range names {
		fmt.Fprintf(b, `<li><code class="prop">%s</code>`, esc(name))
		if required[name] {
			b.WriteString(`<span class="req">required</span>`)
		}
		b.WriteString(" ")
		sp.writeSchema(b, props[i], depth+1)
		b.WriteString("</li>")
	}
	b.WriteString("</ul>")
}

func constraints(sp spec, schema *yaml.Node) string {
	var parts []string
	for _, k := range []string{"minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum", "format"} {
		if v := sp.str(schema, k); v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	if enum := sp.list(sp.get(schema, "enum")); len(enum) > 0 {
		vals := make([]string, len(enum))
		for i, e := range enum {
			vals[i] = e.Value
		}
		parts = append(parts, "one of "+strings.Join(vals, ", "))
	}
	if sp.str(schema, "additionalProperties") == "false" || sp.str(schema, "unevaluatedProperties") == "false" {
		parts = append(parts, "no other fields")
	}
	if len(parts) == 0 {
		return ""
	}
	return ` <span class="constraint">(` + template.HTMLEscapeString(strings.Join(parts, "; ")) + `)</span>`
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// markdownish renders the descriptions' small markdown: paragraphs and
// `code`, everything else escaped.
func markdownish(s string) template.HTML {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	var b strings.Builder
	for _, para := range paragraphBreak.Split(s, -1) {
		b.WriteString("<p>" + string(inlineMarkdown(para)) + "</p>")
	}
	return template.HTML(b.String())
}

var paragraphBreak = regexp.MustCompile(`\n\s*\n`)

// inlineMarkdown escapes s, joins its lines and marks up its `code` spans.
func inlineMarkdown(s string) template.HTML {
	esc := template.HTMLEscapeString(strings.Join(strings.Fields(s), " "))
	return template.HTML(codeSpan.ReplaceAllString(esc, "<code>$1</code>"))
}
