// appset-check renders Iluvatar's ApplicationSets with Argo CD's own code, as its
// ApplicationSet controller would, over a GitOps repository served on this machine.
//
// What is Argo CD's (github.com/argoproj/argo-cd/v3 at the argo-cd chart's appVersion):
//   - the ApplicationSet, AppProject and Application types, decoded strictly (an unknown
//     field is an error, as it would be for the API server's structural schema);
//   - the generators as the controller wires them (generators.GetGenerators), the Git
//     directory generator among them, and the controller's rendering loop
//     (controllers/template.GenerateApplications: generators.Transform, then
//     utils.Render with the ApplicationSet's goTemplate and goTemplateOptions);
//   - the Git client the repo-server uses (util/git: ls-remote through go-git, fetch and
//     checkout through the git CLI), resolving the revision and checking it out;
//   - kustomize 5.8.1's own build (sigs.k8s.io/kustomize/api/krusty v0.21.1, the library of the
//     kustomize v5.8.1 binary Argo CD v3.5.2's image runs) on every generated Application's
//     folder that holds a kustomization, as the repo-server's `kustomize build --enable-helm` would;
//   - the AppProject checks the application controller makes before it syncs an Application
//     (IsSourcePermitted, IsDestinationPermitted on the in-cluster destination), and whether the
//     project lets an app manage a Namespace (IsGroupKindNamePermitted), for every generated
//     Application and every Application given as is (Iluvatar's platform Applications).
//
// What is ours: the services.Repos implementation handing the generator its directory
// list. Argo CD's own (services.NewArgoCDService) asks the repo-server over gRPC; ours
// does in-process what the repo-server's GetGitDirectories does: resolve the revision
// with ls-remote, fetch, check out, and list every directory below the root except
// hidden ones (a copy of its filepath.WalkDir callback). The AppProjects the generator
// reads come from controller-runtime's fake client, holding the program's AppProjects.
//
// The ApplicationSets name the repository as the cluster will reach it (the Ainur's
// mirror, or the user's remote); `repos` maps each such URL to where the same content is
// served here (e.g. a real `git daemon` on 127.0.0.1). Any other URL is an error.
//
// Input (stdin, JSON):
//
//	{"namespace": "argocd", "repos": {"<url in the ApplicationSets>": "<url served here>"},
//	 "projects": [AppProject...], "applicationSets": [ApplicationSet...], "applications": [Application...]}
//
// Output (stdout, JSON): per ApplicationSet, the Applications Argo CD generates, or the
// error its controller would report; per Application (generated or given), what its project
// permits; and per repository, the revision and commit read.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	log "github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/argoproj/argo-cd/v3/applicationset/controllers/template"
	"github.com/argoproj/argo-cd/v3/applicationset/generators"
	"github.com/argoproj/argo-cd/v3/applicationset/utils"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/git"
)

type input struct {
	Namespace       string            `json:"namespace"`
	Repos           map[string]string `json:"repos"`
	Projects        []json.RawMessage `json:"projects"`
	ApplicationSets []json.RawMessage `json:"applicationSets"`
	Applications    []json.RawMessage `json:"applications"`
}

type appSetResult struct {
	Name         string                 `json:"name"`
	Applications []v1alpha1.Application `json:"applications"`
	Error        string                 `json:"error,omitempty"`
}

// permits is what an Application's AppProject lets it do, in Argo CD's own words.
type permits struct {
	Application string `json:"application"`
	Project     string `json:"project"`
	// Empty when the project exists; else why the controller would refuse to sync the app.
	Error       string `json:"error,omitempty"`
	Source      bool   `json:"source"`
	Destination bool   `json:"destination"`
	Namespaces  bool   `json:"namespaces"`
}

type repoRead struct {
	Revision string `json:"revision"`
	Commit   string `json:"commit"`
	Served   string `json:"served"`
	root     string
}

// build is what kustomize renders from a generated Application's folder.
type build struct {
	Application string   `json:"application"`
	Path        string   `json:"path"`
	Kustomize   bool     `json:"kustomize"`
	Objects     []string `json:"objects"`
	Error       string   `json:"error,omitempty"`
}

type output struct {
	ApplicationSets []appSetResult      `json:"applicationSets"`
	Permits         []permits           `json:"permits"`
	Builds          []build             `json:"builds"`
	Repos           map[string]repoRead `json:"repos"`
}

// kustomize builds one folder of a checked-out repository as `kustomize build` does.
func kustomize(app v1alpha1.Application, reads map[string]repoRead) build {
	source := app.Spec.GetSource()
	res := build{Application: app.Name, Path: source.Path, Objects: []string{}}
	read, ok := reads[source.RepoURL]
	if !ok {
		res.Error = fmt.Sprintf("repository %s was not read", source.RepoURL)
		return res
	}
	dir := filepath.Join(read.root, source.Path)
	fs := filesys.MakeFsOnDisk()
	found := false
	for _, name := range konfig.RecognizedKustomizationFileNames() {
		found = found || fs.Exists(filepath.Join(dir, name))
	}
	if !found {
		return res
	}
	res.Kustomize = true
	// What the repo-server runs with argocd-cm's `kustomize.buildOptions: --enable-helm`.
	options := krusty.MakeDefaultOptions()
	options.PluginConfig.HelmConfig.Enabled = true
	options.PluginConfig.HelmConfig.Command = "helm"
	resources, err := krusty.MakeKustomizer(options).Run(fs, dir)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	for _, r := range resources.Resources() {
		res.Objects = append(res.Objects, r.GetKind()+"/"+r.GetName())
	}
	return res
}

// inCluster is the destination every Iluvatar Application names: the cluster Argo CD runs in.
var inCluster = &v1alpha1.Cluster{Server: v1alpha1.KubernetesInternalAPIServerAddr, Name: "in-cluster"}

func check(app v1alpha1.Application, projects map[string]*v1alpha1.AppProject) permits {
	res := permits{Application: app.Name, Project: app.Spec.Project}
	project, ok := projects[app.Spec.Project]
	if !ok {
		res.Error = fmt.Sprintf("application references project %s which does not exist", app.Spec.Project)
		return res
	}
	res.Source = true
	for _, source := range app.Spec.GetSources() {
		res.Source = res.Source && project.IsSourcePermitted(source)
	}
	noClusters := func(string) ([]*v1alpha1.Cluster, error) { return nil, nil }
	destination, err := project.IsDestinationPermitted(inCluster, app.Spec.Destination.Namespace, noClusters)
	if err != nil {
		res.Error = err.Error()
	}
	res.Destination = destination
	res.Namespaces = project.IsGroupKindNamePermitted(schema.GroupKind{Group: "", Kind: "Namespace"}, app.Spec.Destination.Namespace, false)
	return res
}

// strict decodes one object, refusing fields the Argo CD type does not have.
func strict(raw []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}

// localRepos is the services.Repos the Git generator reads directories from.
type localRepos struct {
	served map[string]string
	work   string

	mu    sync.Mutex
	reads map[string]repoRead
	// Directory lists by URL and revision, as the repo-server caches them per commit.
	listed map[string][]string
}

func (r *localRepos) GetFiles(_ context.Context, repoURL, _, _, pattern string, _ bool, _ *v1alpha1.SourceIntegrity) (map[string][]byte, error) {
	return nil, fmt.Errorf("appset-check serves directories only; the Git files generator (%s in %s) is not used by Iluvatar", pattern, repoURL)
}

func (r *localRepos) GetDirectories(_ context.Context, repoURL, revision, _ string, _ bool, _ *v1alpha1.SourceIntegrity) ([]string, error) {
	served, ok := r.served[repoURL]
	if !ok {
		known := make([]string, 0, len(r.served))
		for url := range r.served {
			known = append(known, url)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("repository %s is not served here (served: %s)", repoURL, strings.Join(known, ", "))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if paths, ok := r.listed[repoURL+"@"+revision]; ok {
		return paths, nil
	}
	root, err := os.MkdirTemp(r.work, "repo-")
	if err != nil {
		return nil, err
	}
	// What the repo-server does for GetGitDirectories: resolve the revision (ls-remote),
	// then check that commit out (Init, Fetch, Checkout), with Argo CD's own Git client.
	client, err := git.NewClientExt(served, root, git.NopCreds{}, false, false, "", "")
	if err != nil {
		return nil, fmt.Errorf("git client for %s: %w", served, err)
	}
	commit, err := client.LsRemote(revision)
	if err != nil {
		return nil, fmt.Errorf("ls-remote %s %s: %w", served, revision, err)
	}
	if err := client.Init(); err != nil {
		return nil, fmt.Errorf("init %s: %w", served, err)
	}
	if err := client.Fetch("", 0); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", served, err)
	}
	if !client.IsRevisionPresent(commit) {
		if err := client.Fetch(commit, 0); err != nil {
			return nil, fmt.Errorf("fetch %s %s: %w", served, commit, err)
		}
	}
	if _, err := client.Checkout(commit, false, true); err != nil {
		return nil, fmt.Errorf("checkout %s %s: %w", served, commit, err)
	}
	r.reads[repoURL] = repoRead{Revision: revision, Commit: commit, Served: served, root: client.Root()}
	paths, err := listDirectories(client.Root())
	if err != nil {
		return nil, err
	}
	r.listed[repoURL+"@"+revision] = paths
	return paths, nil
}

// listDirectories is the repo-server's walk in GetGitDirectories (reposerver/repository),
// with its default of leaving hidden directories out (IncludeHiddenDirectories false).
func listDirectories(repoRoot string) ([]string, error) {
	var paths []string
	err := filepath.WalkDir(repoRoot, func(path string, entry fs.DirEntry, fnErr error) error {
		if fnErr != nil {
			return fmt.Errorf("error walking the file tree: %w", fnErr)
		}
		if !entry.IsDir() {
			return nil
		}
		if strings.HasPrefix(entry.Name(), ".") {
			return filepath.SkipDir
		}
		relativePath, err := filepath.Rel(repoRoot, path)
		if err != nil {
			return fmt.Errorf("error constructing relative repo path: %w", err)
		}
		if relativePath == "." {
			return nil
		}
		paths = append(paths, relativePath)
		return nil
	})
	return paths, err
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	var req input
	if err := strict(raw, &req); err != nil {
		return fmt.Errorf("input: %w", err)
	}
	if req.Namespace == "" {
		return fmt.Errorf("input: namespace is required")
	}

	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	objects := []client.Object{}
	projects := map[string]*v1alpha1.AppProject{}
	for i, p := range req.Projects {
		project := &v1alpha1.AppProject{}
		if err := strict(p, project); err != nil {
			return fmt.Errorf("projects[%d]: %w", i, err)
		}
		objects = append(objects, project)
		projects[project.Name] = project
	}
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).Build()

	work, err := os.MkdirTemp("", "appset-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	repos := &localRepos{served: req.Repos, work: work, reads: map[string]repoRead{}, listed: map[string][]string{}}

	// The generators exactly as the ApplicationSet controller builds them; only Git is reached.
	all := generators.GetGenerators(context.Background(), kube, nil, req.Namespace, repos, nil, generators.SCMConfig{}, nil)
	logger := log.New()
	logger.SetOutput(io.Discard)
	// Argo CD's Git client logs every git command it runs at info level; only warnings matter here.
	log.SetLevel(log.WarnLevel)

	result := output{ApplicationSets: []appSetResult{}, Permits: []permits{}, Builds: []build{}, Repos: repos.reads}
	for i, a := range req.ApplicationSets {
		appSet := v1alpha1.ApplicationSet{}
		if err := strict(a, &appSet); err != nil {
			return fmt.Errorf("applicationSets[%d]: %w", i, err)
		}
		apps, _, err := template.GenerateApplications(log.NewEntry(logger), appSet, all, &utils.Render{}, kube)
		res := appSetResult{Name: appSet.Name, Applications: apps}
		if res.Applications == nil {
			res.Applications = []v1alpha1.Application{}
		}
		if err != nil {
			res.Error = err.Error()
		}
		result.ApplicationSets = append(result.ApplicationSets, res)
		for _, app := range res.Applications {
			result.Permits = append(result.Permits, check(app, projects))
			result.Builds = append(result.Builds, kustomize(app, repos.reads))
		}
	}
	for i, a := range req.Applications {
		app := v1alpha1.Application{}
		if err := strict(a, &app); err != nil {
			return fmt.Errorf("applications[%d]: %w", i, err)
		}
		result.Permits = append(result.Permits, check(app, projects))
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", " ")
	return enc.Encode(result)
}

func main() {
	if len(os.Args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: appset-check < input.json (see the package comment)")
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "appset-check:", err)
		os.Exit(1)
	}
}
