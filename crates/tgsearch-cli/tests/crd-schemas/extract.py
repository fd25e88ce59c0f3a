"""Regenerates the custom-resource schemas next to this file from upstream CRD files.

The manifests under manifests/broker/, manifests/broker-targets/ and manifests/secrets/ are custom resources, which
kubernetes-validate cannot check; `validate_custom_resources.py` checks them against these schemas
instead (strictly: unknown fields are errors, as with `kubectl apply --validate=strict`). Each
schema is the `openAPIV3Schema` of the served version the manifests use, taken from the CRD of the
release the README installs, without descriptions and without the branches these manifests cannot
use (other secret-store providers, other issuer types), which keeps them small.

    python3 extract.py <dir holding the CRD files named below>

CRD files (and where each comes from):
    rabbitmqclusters.yaml     rabbitmq/cluster-operator v2.22.3 config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml
    certificates.yaml         cert-manager/cert-manager v1.21.1 deploy/crds/cert-manager.io_certificates.yaml
    issuers.yaml              cert-manager/cert-manager v1.21.1 deploy/crds/cert-manager.io_issuers.yaml
    targetgroupbindings.yaml  kubernetes-sigs/aws-load-balancer-controller v3.5.0 config/crd/bases/elbv2.k8s.aws_targetgroupbindings.yaml
    secretproviderclasses.yaml  kubernetes-sigs/secrets-store-csi-driver (chart of the EKS add-on aws-secrets-store-csi-driver-provider)
                              config/crd/bases/secrets-store.csi.x-k8s.io_secretproviderclasses.yaml, served version v1
"""

import json
import os
import sys

import yaml

SOURCES = [
    ("rabbitmqclusters.yaml", "v1beta1", None),
    ("certificates.yaml", "v1", None),
    ("issuers.yaml", "v1", ("spec", {"selfSigned", "ca"})),
    ("targetgroupbindings.yaml", "v1beta1", None),
    ("secretproviderclasses.yaml", "v1", None),
]


def strip_descriptions(node):
    if isinstance(node, dict):
        return {k: strip_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def main(src):
    here = os.path.dirname(os.path.abspath(__file__))
    for filename, version, keep in SOURCES:
        crd = yaml.safe_load(open(os.path.join(src, filename)))
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        served = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = served[0]["schema"]["openAPIV3Schema"]
        if keep:
            path, names = keep
            node = schema
            for part in path.split("."):
                node = node["properties"][part]
            node["properties"] = {k: v for k, v in node["properties"].items() if k in names}
            node.pop("oneOf", None)
            node.pop("anyOf", None)
        out = os.path.join(here, f"{group}_{version}_{kind}.json")
        with open(out, "w") as f:
            json.dump(
                {"apiVersion": f"{group}/{version}", "kind": kind, "schema": strip_descriptions(schema)},
                f,
                separators=(",", ":"),
                sort_keys=True,
            )
            f.write("\n")
        print(out, os.path.getsize(out))


if __name__ == "__main__":
    main(sys.argv[1])
