"""`helm template` and `helm lint` through Helm's own Go SDK (helm.sh/helm/v4).

Run by scripts/helm-dev inside its venv. `template` is Helm's install action
with a client-only dry run and in-memory release storage: what `helm template`
itself runs (chart load, values.schema.json validation, the template engine,
manifest sorting, hooks), without a cluster. Values files merge the way the
helm CLI merges -f files (later files win key by key; maps merge, everything
else is replaced).
"""

import argparse
import json
import sys

import helm_python as helm


def merge(base, override):
    # helm's pkg/cli/values mergeMaps: nested maps merge, other values replace.
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def values(files):
    merged = {}
    for path in files or []:
        with open(path, encoding="utf-8") as f:
            merged = merge(merged, helm.values_from_yaml(f.read()) or {})
    return merged


def install(args):
    with helm.Config(namespace=args.namespace, storage_driver="memory") as cfg:
        return cfg.install(args.chart, args.name, values(args.values), dry_run="client")


def main():
    p = argparse.ArgumentParser(prog="scripts/helm-dev")
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd in ("template", "notes"):
        s = sub.add_parser(cmd)
        s.add_argument("name")
        s.add_argument("chart")
        s.add_argument("-n", "--namespace", default="default")
        s.add_argument("-f", "--values", action="append")
    s = sub.add_parser("lint")
    s.add_argument("chart")
    s.add_argument("-f", "--values", action="append")
    s.add_argument("--kube-version", help="e.g. v1.20.2: lint against that API server's APIs")
    sub.add_parser("version")
    args = p.parse_args()
    try:
        if args.cmd == "template":
            sys.stdout.write(install(args)["manifest"])
        elif args.cmd == "notes":
            sys.stdout.write(install(args).get("notes", ""))
        elif args.cmd == "lint":
            result = helm.lint(
                args.chart, values=values(args.values), strict=True,
                kube_version=args.kube_version,
            )
            print(json.dumps(result, indent=2))
            # Severity 2 is a warning, 3 an error; strict fails on both, as `helm lint --strict`.
            if result.get("errors") or any(m.get("severity", 0) >= 2 for m in result.get("messages") or []):
                return 1
        elif args.cmd == "version":
            print(f"helm-python-sdk (libhelm_c {helm.helm_c_version()}), Helm SDK {helm.helm_sdk_version()}")
    except helm.HelmError as e:
        print(f"helm-dev {args.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
