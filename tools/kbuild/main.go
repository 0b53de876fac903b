// Command kflowgen-kbuild runs `kustomize build` on many overlays in one process.
//
// It links the same kustomize code as the pinned kustomize binary (sigs.k8s.io/kustomize/kustomize/v5 v5.8.1,
// which requires sigs.k8s.io/kustomize/api v0.21.1 and kyaml v0.21.1; see go.mod) and takes its build options
// from that binary's own `build` command code (build.NewCmdBuild + build.HonorKustomizeFlags), so each overlay's
// output is byte-identical to `kustomize build DIR`, without one process start-up (~11 ms) per overlay.
//
// Usage:
//
//	kflowgen-kbuild [-j N] [-json] [-selfcheck] [-- KUSTOMIZE-BUILD-FLAGS...] < overlay-dirs
//	kflowgen-kbuild -version
//
//	-j N   overlays built at once (goroutines); default GOMAXPROCS.
//	-json  after each "ok" record, also write a "json" record (see Output).
//	-selfcheck  print each overlay both with printResources (below) and with kustomize's own AsYaml, and with -json check
//	       each object's JSON against the printed YAML as kubeconform reads it; a difference makes that overlay's
//	       record an "error" naming "selfcheck" (a test of the short cuts, not for everyday use).
//	--     everything after it is parsed as flags of `kustomize build` with that command's own flag code,
//	       e.g. `-- --load-restrictor LoadRestrictionsNone` or `-- --enable-helm`. Without it the options are
//	       exactly those of a plain `kustomize build DIR` (load restrictor rootOnly, plugins disabled apart from
//	       builtins, reorder "unspecified" = legacy order unless the kustomization has sortOptions, managed-by
//	       label only when KUSTOMIZE_ENABLE_MANAGEDBY_LABEL=on). --output/-o and positional arguments are refused.
//
// Input (stdin): one overlay directory a line, as it would be passed to `kustomize build DIR` (absolute paths are
// best: a relative one is relative to this process's working directory, and kustomize's messages quote it as
// given). A trailing "\r" is dropped; empty lines are skipped.
//
// Output (stdout): for each input overlay, in input order, a header line then a payload of exactly LEN bytes:
//
//	==> LEN STATUS DIR\n
//	<LEN bytes>
//
// LEN is a decimal byte count, STATUS is "ok" or "error", DIR is the line as read (it may contain spaces: split
// the header on the first three spaces only). Nothing separates a payload from the next header. With "ok" the
// payload is exactly what `kustomize build DIR` writes to stdout (possibly empty). With "error" it is exactly what
// `kustomize build DIR` writes to stderr when it fails: "Error: <message>\n". A panic inside kustomize is caught
// and reported as an "error" payload "Error: panic: <value>\n" (the kustomize binary would crash instead).
// Results are written as soon as they and all earlier ones are done, so a reader can consume them as a stream.
//
// With -json, each "ok" record is followed by a second record for the same DIR, "==> LEN json DIR\n", whose
// payload is a JSON array holding each built object as its printed YAML reads (sigs.k8s.io/yaml's YAML-to-JSON,
// as kubeconform and kubectl read it), mostly written straight from kustomize's node tree (see printResources). Readers
// that check built objects can then skip parsing the YAML.
//
// -version prints the protocol number (2: the -json record), the source digest `kflowgen tools install` built in,
// and the kustomize modules linked in.
//
// Warnings that kustomize logs during a build (Go's log package: deprecated fields and the like) go to this
// process's stderr, not into the payload, and may interleave between overlays when -j > 1.
//
// Environment: KUSTOMIZE_ENABLE_MANAGEDBY_LABEL as for kustomize; GOGC (default here 800, not Go's 100) and
// GOMEMLIMIT (default here 1GiB, not unlimited).
//
// Exit status: 0 when every overlay built; 1 when the stream is complete but at least one overlay has status
// "error"; 2 on a usage error or when stdin/stdout fail (the stream may then be incomplete).
//
// Concurrency: kustomize keeps its OpenAPI schema in process-wide globals (sigs.k8s.io/kustomize/kyaml/openapi).
// The default built-in schema is parsed once before the workers start (parsing it gives the same lookups as the
// precomputed tables kustomize uses before parsing, see kyaml's TestIsNamespaceScopedPrecompute), so concurrent
// builds only read it. An overlay whose kustomization tree mentions "openapi" (a custom or versioned schema), or
// whose tree cannot be scanned (remote bases, unparsable files), is built alone, with the schema globals reset
// before and after it, as in a fresh kustomize process.
//
// Build: kflowgen tools install (go install with -ldflags "-X main.source=<digest of this folder>").
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kustomize/v5/commands/build"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/openapi"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"

	yaml2 "go.yaml.in/yaml/v2"
)

const (
	program  = "kflowgen-kbuild"
	protocol = "2" // 2: the -json record
)

// source is a digest of this folder's source, set by `kflowgen tools install` (-ldflags "-X main.source=...").
var source = "unset"

type result struct {
	status  string // "ok" or "error"
	payload []byte
	objects []byte // with -json: the built objects as a JSON array
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(stderr)
	jobs := fs.Int("j", runtime.GOMAXPROCS(0), "overlays built at once")
	version := fs.Bool("version", false, "print the protocol and kustomize module versions, and exit")
	asJSON := fs.Bool("json", false, "also write each built overlay's objects as a JSON array")
	selfcheck := fs.Bool("selfcheck", false, "also print each overlay with kustomize's own AsYaml; fail it on a difference")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [-j N] [-json] [-selfcheck] [-- KUSTOMIZE-BUILD-FLAGS...] < overlay-dirs\n", program)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, versions())
		return 0
	}
	if *jobs < 1 {
		fmt.Fprintf(stderr, "%s: -j must be at least 1\n", program)
		return 2
	}
	cmd, err := buildCommand(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 2
	}

	var dirs []string
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line != "" {
			dirs = append(dirs, line)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(stderr, "%s: reading stdin: %v\n", program, err)
		return 2
	}

	if os.Getenv("GOGC") == "" {
		// kustomize allocates ~5 MB an overlay and keeps little: collecting less often saves ~25% of CPU time
		// for ~150 MB of memory (6,000 overlays, 2 workers: 16.8 s and 250 MB; GOGC=100: 21 s and 150 MB).
		// GOGC in the environment overrides this.
		debug.SetGCPercent(800)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// ...but a live heap that is large (an overlay of thousands of objects) would grow 9-fold: above 1 GiB the
		// collector runs sooner. Two overlays of 3,000 Jobs each, -j 2: 1.0 GB and 33.9 s instead of 2.4 GB and
		// 29.6 s; the 6,000 overlays of 1,000 teams never reach it. GOMEMLIMIT in the environment overrides this.
		debug.SetMemoryLimit(1 << 30)
	}
	b := &builder{cmd: cmd, fSys: filesys.MakeFsOnDisk(), json: *asJSON, selfcheck: *selfcheck}
	if *jobs > 1 && len(dirs) > 1 {
		// Parse the default schema before builds run concurrently (see "Concurrency" above).
		openapi.Schema()
	}

	done := make([]chan result, len(dirs))
	for i := range done {
		done[i] = make(chan result, 1)
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < *jobs && w < len(dirs); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				done[i] <- b.build(dirs[i])
			}
		}()
	}
	go func() {
		for i := range dirs {
			next <- i
		}
		close(next)
	}()

	out := bufio.NewWriterSize(stdout, 1<<20)
	failed := false
	for i, dir := range dirs {
		r := <-done[i]
		failed = failed || r.status != "ok"
		fmt.Fprintf(out, "==> %d %s %s\n", len(r.payload), r.status, dir) // a write error sticks: Flush reports it
		out.Write(r.payload)
		if b.json && r.status == "ok" {
			fmt.Fprintf(out, "==> %d json %s\n", len(r.objects), dir)
			out.Write(r.objects)
		}
		if i+1 == len(dirs) || len(done[i+1]) == 0 { // flush when the next result is not ready yet
			if err := out.Flush(); err != nil {
				fmt.Fprintf(stderr, "%s: writing stdout: %v\n", program, err)
				return 2
			}
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "%s: writing stdout: %v\n", program, err)
		return 2
	}
	wg.Wait()
	if failed {
		return 1
	}
	return 0
}

// buildCommand makes kustomize's own `build` command (as `kustomize` does in commands.go) so that its flag
// defaults, and any kustomize build flags given after "--", become krusty options through its own code.
func buildCommand(args []string) (*cobra.Command, error) {
	cmd := build.NewCmdBuild(filesys.MakeFsOnDisk(), build.MakeHelp(konfig.ProgramName, "build"), io.Discard)
	build.AddFunctionAlphaEnablementFlags(cmd.Flags())
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.ParseFlags(args); err != nil {
		return nil, fmt.Errorf("kustomize build flags: %w", err)
	}
	if rest := cmd.Flags().Args(); len(rest) > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: overlay directories are read from stdin", rest)
	}
	if cmd.Flags().Changed("output") {
		return nil, fmt.Errorf("--output is not supported: results are written to stdout as a stream")
	}
	if err := build.Validate(nil); err != nil {
		return nil, err
	}
	return cmd, nil
}

type builder struct {
	cmd       *cobra.Command
	fSys      filesys.FileSystem
	json      bool         // also convert each built object to JSON
	selfcheck bool         // compare printResources with kustomize's own code
	schema    sync.RWMutex // read-locked by ordinary builds, write-locked by builds that set the OpenAPI schema
	scans     sync.Map     // absolute directory -> bool: its kustomization tree may set the OpenAPI schema
}

// build is one `kustomize build dir`: the same steps as the RunE of kustomize's build command, writing to stdout.
func (b *builder) build(dir string) (r result) {
	exclusive := b.mayTouchSchema(dir, map[string]bool{})
	if exclusive {
		b.schema.Lock()
		openapi.ResetOpenAPI()
		defer func() {
			openapi.ResetOpenAPI()
			openapi.Schema() // back to the parsed default schema that concurrent builds expect
			b.schema.Unlock()
		}()
	} else {
		b.schema.RLock()
		defer b.schema.RUnlock()
	}
	defer func() {
		if p := recover(); p != nil {
			r = result{"error", []byte(fmt.Sprintf("Error: panic: %v\n", p)), nil}
		}
	}()
	k := krusty.MakeKustomizer(build.HonorKustomizeFlags(krusty.MakeDefaultOptions(), b.cmd.Flags()))
	m, err := k.Run(b.fSys, dir)
	if err != nil {
		return result{"error", []byte("Error: " + err.Error() + "\n"), nil}
	}
	yml, objects, err := printResources(m, b.json)
	if err != nil {
		return result{"error", []byte("Error: " + err.Error() + "\n"), nil}
	}
	if b.selfcheck {
		if want, err := m.AsYaml(); err != nil || string(want) != string(yml) {
			return result{"error", []byte(fmt.Sprintf("Error: selfcheck: printResources differs from AsYaml (%v)\n", err)), nil}
		}
		if b.json {
			if err := sameAsRead(objects, m); err != nil {
				return result{"error", []byte("Error: selfcheck: " + err.Error() + "\n"), nil}
			}
		}
	}
	return result{"ok", yml, objects}
}

// sameAsRead checks the JSON record against what kubeconform reads from each resource's YAML as kustomize prints
// it (sigs.k8s.io/yaml's strict YAML-to-JSON, then encoding/json), both decoded as encoding/json decodes them.
func sameAsRead(record []byte, m resmap.ResMap) error {
	var got []interface{}
	if err := json.Unmarshal(record, &got); err != nil {
		return err
	}
	if len(got) != m.Size() {
		return fmt.Errorf("the JSON record holds %d objects, not %d", len(got), m.Size())
	}
	for i, res := range m.Resources() {
		printed, err := res.AsYAML()
		if err != nil {
			return err
		}
		read, err := yaml.YAMLToJSONStrict(printed)
		if err != nil {
			return err
		}
		var want interface{}
		if err := json.Unmarshal(read, &want); err != nil {
			return err
		}
		if !reflect.DeepEqual(got[i], want) {
			again, _ := json.Marshal(got[i])
			return fmt.Errorf("the JSON record %s differs from the printed YAML as read: %s", again, read)
		}
	}
	return nil
}

// printResources is m.AsYaml(), byte for byte, without most of its work; with objects, also the JSON record. kustomize
// prints each resource by writing its node tree out as YAML text, parsing that into Go maps (yaml.v3), marshalling
// the maps to JSON, parsing the JSON again (yaml.v2, which picks number types) and marshalling the result with
// yaml.v2: a third of a build's CPU time. Here the node tree goes straight to the values that second parse yields
// (strings as they are; numbers, booleans and nulls through the same JSON and yaml.v2 steps, one scalar at a
// time), which yaml.v2 then marshals as kustomize does. A resource holding anything else (other tags such as
// timestamps and binary, aliases, block scalars, keys that are not strings, duplicate keys, characters the round
// trip changes or refuses) is printed by kustomize's own code, and any error comes from kustomize's own AsYaml.
//
// The JSON record holds each object as its printed YAML reads (what kubeconform and kubectl see): written straight
// from the node tree when the short cut printed it (plain strings and numbers read back as they are), else
// converted from the printed YAML with sigs.k8s.io/yaml. -selfcheck checks both against kustomize's own code.
func printResources(m resmap.ResMap, objects bool) ([]byte, []byte, error) {
	var out, record []byte
	if objects {
		record = []byte{'['}
	}
	for i, res := range m.Resources() {
		if i > 0 {
			out = append(out, "---\n"...)
			if objects {
				record = append(record, ',')
			}
		}
		yml, ok := fastYAML(res.YNode())
		if !ok {
			var err error
			if yml, err = res.AsYAML(); err != nil {
				if _, whole := m.AsYaml(); whole != nil {
					err = whole // its error, worded as kustomize words it
				}
				return nil, nil, err
			}
		}
		out = append(out, yml...)
		if !objects {
			continue
		}
		var err error
		if ok {
			record, err = appendJSON(record, res.YNode())
		} else {
			var j []byte
			j, err = yaml.YAMLToJSON(yml)
			record = append(record, j...)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("converting to JSON: %w", err)
		}
	}
	if objects {
		record = append(record, ']')
	}
	return out, record, nil
}

func fastYAML(n *kyaml.Node) ([]byte, bool) {
	if n == nil || n.Kind != kyaml.MappingNode {
		return nil, false
	}
	v, ok := yaml2Value(n)
	if !ok {
		return nil, false
	}
	yml, err := yaml2.Marshal(v)
	return yml, err == nil
}

// yaml2Value is what yaml.v2 reads back from the JSON that kyaml's MarshalJSON makes of n, when that is plain.
func yaml2Value(n *kyaml.Node) (interface{}, bool) {
	switch n.Kind {
	case kyaml.MappingNode:
		m := make(map[interface{}]interface{}, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i]
			if key.Kind != kyaml.ScalarNode || key.Value == "<<" {
				return nil, false
			}
			if _, ok := yaml2Value(key); !ok || key.ShortTag() != kyaml.NodeTagString {
				return nil, false
			}
			if _, dup := m[key.Value]; dup {
				return nil, false
			}
			v, ok := yaml2Value(n.Content[i+1])
			if !ok {
				return nil, false
			}
			m[key.Value] = v
		}
		return m, true
	case kyaml.SequenceNode:
		s := make([]interface{}, len(n.Content))
		for i, item := range n.Content {
			v, ok := yaml2Value(item)
			if !ok {
				return nil, false
			}
			s[i] = v
		}
		return s, true
	case kyaml.ScalarNode:
		if n.Tag == "!" { // the non-specific tag: what it reads as depends on how it is printed
			return nil, false
		}
		switch tag := n.ShortTag(); tag {
		case kyaml.NodeTagString:
			// a plain (unquoted) string spanning lines or holding tabs may not print as a plain scalar again
			return n.Value, plain(n) && !(n.Style == 0 && strings.ContainsAny(n.Value, "\n\t"))
		case kyaml.NodeTagInt, kyaml.NodeTagFloat, kyaml.NodeTagBool, kyaml.NodeTagNull:
			// only a plain, non-empty scalar that reads as its tag without one: a quoted, tagged or empty one (an
			// empty null in a flow collection prints as '') may read back as something else
			if n.Style != 0 || n.Value == "" || (&kyaml.Node{Kind: kyaml.ScalarNode, Value: n.Value}).ShortTag() != tag {
				return nil, false
			}
			var v interface{}
			if n.Decode(&v) != nil {
				return nil, false
			}
			j, err := json.Marshal(v)
			if err != nil {
				return nil, false
			}
			var back interface{}
			if yaml2.Unmarshal(j, &back) != nil {
				return nil, false
			}
			return back, true
		}
	}
	return nil, false
}

// plain refuses scalars whose text the round trip through YAML text, JSON and yaml.v2 might change or refuse: block
// styles (literal, folded), and any character outside what yaml.v2 reads as printable, line breaks of its own
// (NEL, U+2028, U+2029) or text that is not UTF-8 (encoding/json would replace it).
func plain(n *kyaml.Node) bool {
	if n.Style&(kyaml.LiteralStyle|kyaml.FoldedStyle) != 0 {
		return false
	}
	for _, r := range n.Value {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || r == 0xfeff ||
			r == 0xfffe || r == 0xffff || r == utf8.RuneError:
			return false
		}
	}
	return true
}

// appendJSON writes a YAML node tree as JSON. Strings (the great majority of scalars) are written directly;
// other scalars are decoded by the YAML library (numbers, booleans, null) and written by encoding/json.
func appendJSON(out []byte, n *kyaml.Node) ([]byte, error) {
	var err error
	switch n.Kind {
	case kyaml.DocumentNode:
		if len(n.Content) == 0 {
			return append(out, "null"...), nil
		}
		return appendJSON(out, n.Content[0])
	case kyaml.AliasNode:
		return appendJSON(out, n.Alias)
	case kyaml.MappingNode:
		out = append(out, '{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				out = append(out, ',')
			}
			key := n.Content[i]
			if key.Kind != kyaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a mapping key that is not a scalar", key.Line)
			}
			if out, err = appendString(out, key.Value); err != nil {
				return nil, err
			}
			out = append(out, ':')
			if out, err = appendJSON(out, n.Content[i+1]); err != nil {
				return nil, err
			}
		}
		return append(out, '}'), nil
	case kyaml.SequenceNode:
		out = append(out, '[')
		for i, item := range n.Content {
			if i > 0 {
				out = append(out, ',')
			}
			if out, err = appendJSON(out, item); err != nil {
				return nil, err
			}
		}
		return append(out, ']'), nil
	case kyaml.ScalarNode:
		switch n.ShortTag() {
		case kyaml.NodeTagString, "!!timestamp", "!!binary":
			return appendString(out, n.Value)
		}
		var v interface{}
		if err = n.Decode(&v); err != nil {
			return nil, err
		}
		j, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return append(out, j...), nil
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node kind %d", n.Line, n.Kind)
}

func appendString(out []byte, s string) ([]byte, error) {
	j, err := json.Marshal(s)
	return append(out, j...), err
}

// mayTouchSchema reports whether building dir may change kustomize's global OpenAPI schema: some kustomization
// file reachable from dir mentions "openapi", or the tree cannot be followed (then assume it may).
func (b *builder) mayTouchSchema(dir string, seen map[string]bool) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return true
	}
	if v, ok := b.scans.Load(abs); ok {
		return v.(bool)
	}
	if seen[abs] {
		return false // a cycle: kustomize reports it; nothing new here
	}
	seen[abs] = true
	v := b.scan(abs, seen)
	b.scans.Store(abs, v)
	return v
}

func (b *builder) scan(dir string, seen map[string]bool) bool {
	var data []byte
	found := 0
	for _, name := range konfig.RecognizedKustomizationFileNames() {
		if d, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			data = d
			found++
		}
	}
	if found != 1 {
		return found > 1 // none: kustomize fails before any schema is set; several: kustomize refuses them too
	}
	if strings.Contains(strings.ToLower(string(data)), "openapi") {
		return true
	}
	var k struct {
		Resources, Bases, Components, Generators, Transformers, Validators []string
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return true
	}
	for _, list := range [][]string{k.Resources, k.Bases, k.Components, k.Generators, k.Transformers, k.Validators} {
		for _, entry := range list {
			if strings.Contains(entry, "\n") { // an inline generator or transformer configuration
				continue
			}
			if strings.Contains(entry, "://") || strings.HasPrefix(entry, "git@") || strings.HasPrefix(entry, "github.com/") {
				return true // remote: not scanned
			}
			p := entry
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			if st, err := os.Stat(p); err == nil && st.IsDir() && b.mayTouchSchema(p, seen) {
				return true
			}
		}
	}
	return false
}

// versions names the kustomize modules this binary links, as recorded by the Go toolchain.
func versions() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return program + " (no build information)"
	}
	parts := []string{program, "protocol", protocol, "source", source}
	for _, d := range info.Deps {
		switch d.Path {
		case "sigs.k8s.io/kustomize/kustomize/v5", "sigs.k8s.io/kustomize/api", "sigs.k8s.io/kustomize/kyaml":
			parts = append(parts, d.Path+"@"+d.Version)
		}
	}
	return strings.Join(parts, " ")
}
