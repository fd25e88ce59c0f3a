"""Validates the custom resources among the given manifest files against the schemas in
crd-schemas/ (see crd-schemas/extract.py), the way the API server does with strict field
validation: the CRD's structural schema, and an unknown field is an error.

    validate_custom_resources.py FILE...

Prints one line per custom resource (`ok ...` or `ERROR ...`), and `unknown <apiVersion> <kind>`
for a custom resource without a schema. Exit code 0 only when every custom resource has a schema
and validates. Built-in kinds (no dot in the API group, or *.k8s.io) are kubernetes-validate's job
and skipped here.
"""

import glob
import json
import os
import sys

import jsonschema
import yaml


def strict(node):
    """Unknown fields are errors wherever the schema lists the fields and does not say otherwise."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def load_schemas():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crd-schemas")
    schemas = {}
    for path in glob.glob(os.path.join(here, "*.json")):
        doc = json.load(open(path))
        schemas[(doc["apiVersion"], doc["kind"])] = strict(doc["schema"])
    return schemas


def built_in(api_version):
    group = api_version.split("/")[0] if "/" in api_version else ""
    return "." not in group or group.endswith(".k8s.io")


def main(files):
    schemas = load_schemas()
    failed = False
    for path in files:
        for doc in yaml.safe_load_all(open(path)):
            if not doc or built_in(doc.get("apiVersion", "")):
                continue
            key = (doc["apiVersion"], doc["kind"])
            name = f"{path} {doc['kind']}/{doc.get('metadata', {}).get('name')}"
            if key not in schemas:
                print(f"unknown {key[0]} {key[1]} ({name})")
                failed = True
                continue
            errors = sorted(
                jsonschema.Draft202012Validator(schemas[key]).iter_errors(doc),
                key=lambda e: list(e.absolute_path),
            )
            for e in errors:
                where = ".".join(str(p) for p in e.absolute_path) or "(root)"
                print(f"ERROR {name}: {where}: {e.message}")
                failed = True
            if not errors:
                print(f"ok {name} against {key[0]} {key[1]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
