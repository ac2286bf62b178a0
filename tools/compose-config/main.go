// compose-config prints a compose file's normalized project as JSON, like
// `docker compose config --format json`, without Docker: it calls the compose
// specification's own loader (github.com/compose-spec/compose-go/v2), so
// interpolation, `.env`, YAML anchors and merge keys, profiles and
// normalization follow Docker Compose exactly instead of a re-implementation.
//
// Usage:
//
//	compose-config [-f docker-compose.yaml]... [--env KEY=VALUE]... [--profile NAME]...
//	               [--all-resources]
//
// Variables come from the process environment, then a `.env` beside the file;
// --env overrides both. Profiles default to COMPOSE_PROFILES; `--profile '*'`
// enables every service. Volumes and networks no enabled service uses are
// dropped, as Docker Compose does, unless --all-resources. Warnings are "warning: ..." lines on stderr; a load
// error is one "error: ..." line on stderr and exit code 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/sirupsen/logrus"
)

// repeated collects a flag given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// warningLine prints the loader's warnings (an unset variable, an obsolete attribute) as
// "warning: ..." lines on stderr, so a caller can tell them from the error line.
type warningLine struct{}

func (warningLine) Format(e *logrus.Entry) ([]byte, error) {
	return []byte(e.Level.String() + ": " + e.Message + "\n"), nil
}

func main() {
	logrus.SetFormatter(warningLine{})
	flags := flag.NewFlagSet("compose-config", flag.ContinueOnError)
	var files, env, profiles repeated
	flags.Var(&files, "f", "a compose file; several are merged in order (default docker-compose.yaml)")
	flags.Var(&files, "file", "same as -f")
	allResources := flags.Bool("all-resources", false, "keep volumes and networks no service uses")
	flags.Var(&env, "env", "KEY=VALUE for interpolation, over the process environment and .env (repeatable)")
	flags.Var(&profiles, "profile", "a profile to enable, '*' for all (repeatable; default COMPOSE_PROFILES)")
	if err := flags.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if flags.NArg() > 0 {
		fail(fmt.Errorf("unexpected argument %q; the file is given with -f", flags.Arg(0)))
	}
	if len(files) == 0 {
		files = repeated{"docker-compose.yaml"}
	}
	for _, kv := range env {
		if !strings.Contains(kv, "=") {
			fail(fmt.Errorf("--env %q is not KEY=VALUE", kv))
		}
	}

	// the options `docker compose config` builds (docker/compose cmd/compose/compose.go);
	// WithEnv comes first because WithOsEnv keeps variables that are already set
	options, err := cli.NewProjectOptions(
		files,
		cli.WithEnv(env),
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithDefaultProfiles(profiles...),
		cli.WithDiscardEnvFile,
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	if !*allResources {
		project = project.WithoutUnnecessaryResources()
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(append(out, '\n'))
}

// fail prints err as one line starting "error: ", the contract callers
// (orderlake.cluster.compose) rely on.
func fail(err error) {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	fmt.Fprintln(os.Stderr, "error: "+strings.Join(lines, "; "))
	os.Exit(1)
}
