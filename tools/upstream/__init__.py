"""Upstream artifacts: the real schemas and Helm charts Iluvatar's output is checked against.

Every schema and chart comes from the upstream project's own Go module at an exact version,
fetched through the Go module proxy (`go mod download`, verified by the checksum database the
proxy serves) and checked against the `h1:` sum committed in `tools/upstream/modules.sum`.
Nothing is read from a folder beside the repository and nothing is vendored into it: modules
land in the Go module cache, and what is derived from them in `$ILUVATAR_CACHE/upstream/`.

    modules.py  the pins, fetching, the offline mirror, the derived-artifact cache, Talos' schema
    charts.py   charts as their releases package them; values schemas; real `helm template`
    crds.py     CRD schemas per served version, as JSON Schema in kubeconform's layout
    kube.py     Kubernetes' core schemas and real kubeconform, strict and offline

The API later work calls (every version is the one the program installs):

    module_dir(module, version)              the verified module source tree
    talos_schema(version)                    Talos' machine-config JSON schema (pkg/machinery)
    chart(name, version, omit=())            a chart folder as its release packages it, subcharts included
    values_errors(chart_dir, values)         values against the chart's values.schema.json, closed
    helm_template(chart_dir, values, release=, namespace=, kube_version=)   what real Helm renders
    crd_schema_dir(source, version)          a source's CRD schemas (kubeconform's layout)
    crd_schema_dir_of(objects)               the same for the CRDs a chart renders (--include-crds)
    crd_validator(api_version, kind, source=, version=)   one CRD version's schema, in Python
    kubeconform(objects, kube_version, crds=[(source, version)], crd_dirs=[])   real kubeconform's problems

Command line:

    python -m tools.upstream fetch                fetch every pinned module (warms the cache)
    python -m tools.upstream pin MODULE@VERSION   fetch one (sumdb-verified) and record its sum
    python -m tools.upstream mirror DIR           copy every pinned module into a GOPROXY folder
    python -m tools.upstream chart NAME VERSION   print a prepared chart's folder
    python -m tools.upstream crds SOURCE VERSION  print a CRD schema folder

`ILUVATAR_SCHEMAS=DIR` makes DIR (a folder `mirror` wrote) the only source of modules, offline;
the committed sums are still checked, so a mirror cannot change what is validated.
"""

from tools.upstream.charts import CHARTS, ChartSource, HelmError, chart, helm_template, template_value_paths, values_errors, values_schema
from tools.upstream.crds import CRD_SOURCES, CrdSource, crd_json_schemas, crd_schema_dir, crd_schema_dir_of, crd_validator, crds, write_crd_schemas
from tools.upstream.kube import core_schema_dir, kubeconform
from tools.upstream.modules import LOADER, MIRROR_ENV, PINS, TALOS_MACHINERY, UpstreamError, download, module_dir, pinned_sum, pins, talos_schema

__all__ = [
    "CHARTS",
    "CRD_SOURCES",
    "LOADER",
    "MIRROR_ENV",
    "PINS",
    "TALOS_MACHINERY",
    "ChartSource",
    "CrdSource",
    "HelmError",
    "UpstreamError",
    "chart",
    "core_schema_dir",
    "crd_json_schemas",
    "crd_schema_dir",
    "crd_schema_dir_of",
    "crd_validator",
    "crds",
    "download",
    "helm_template",
    "kubeconform",
    "module_dir",
    "pinned_sum",
    "pins",
    "talos_schema",
    "template_value_paths",
    "values_errors",
    "values_schema",
    "write_crd_schemas",
]
