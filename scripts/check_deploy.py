#!/usr/bin/env python3
"""Validates rendered kustomize output (deploy/overlays/*) offline, as an API server with strict field
validation would, plus the project's own deployment rules. Run by scripts/check_deploy.sh, which renders
each overlay and installs the validators; exits non-zero on the first file with any error.

  core kinds           kubernetes-validate (PyPI), strict: unknown fields are errors
  kafka.strimzi.io     the CRDs of Strimzi 1.2.0 (--strimzi-crds), served versions only; objects that
                       list `properties` reject unknown fields unless x-kubernetes-preserve-unknown-fields.
                       KafkaUser (not in that directory) against deploy/schemas/kafkauser-v1.yaml
  monitoring.coreos.com, keda.sh
                       @kubernetes-models/prometheus-operator and @kubernetes-models/keda (npm), through
                       scripts/validate_crs.mjs
  project rules        image set by kustomize `images:`, kube-prometheus-stack `release` label on the
                       PodMonitor and PrometheusRule, KEDA maxReplicaCount <= partitions, topics not created
                       by the apps, migration in an init container (no Job), Kafka version Strimzi 1.2 runs.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

# Kubernetes version whose schemas the core kinds are checked against (kubernetes-validate ships many).
K8S_VERSION = "1.32.0"
# Kafka versions Strimzi 1.2 runs (Strimzi 1.1 and later support the 4.2.x and 4.3.x lines).
KAFKA_VERSION_PREFIXES = ("4.2.", "4.3.")
THIRD_PARTY_GROUPS = ("monitoring.coreos.com", "keda.sh")


def strictify(schema):
    """Copy of an OpenAPI v3 structural schema in which every object that lists `properties` rejects
    other fields, as the API server's strict field validation does, unless it preserves unknown fields
    or already says what extra properties may be."""
    schema = copy.deepcopy(schema)

    def walk(s):
        if not isinstance(s, dict):
            return
        if (
            "properties" in s
            and "additionalProperties" not in s
            and not s.get("x-kubernetes-preserve-unknown-fields")
        ):
            s["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for sub in (s.get(key) or {}).values():
                walk(sub)
        for key in ("items", "additionalProperties", "not"):
            if isinstance(s.get(key), dict):
                walk(s[key])
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in s.get(key) or []:
                walk(sub)

    walk(schema)
    # metadata is checked by the API server's ObjectMeta, not by the CRD: accept any metadata object.
    props = schema.get("properties", {})
    if "metadata" in props:
        props["metadata"] = {"type": "object"}
    return schema


def load_strimzi(crd_dir, kafkauser_schema):
    """Maps (apiVersion, kind) to a strict JSON schema, for every served version of every CRD."""
    schemas = {}
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(crd_dir, name)) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"]
                for v in crd["spec"]["versions"]:
                    if v.get("served"):
                        schemas[(f"{group}/{v['name']}", kind)] = strictify(
                            v["schema"]["openAPIV3Schema"]
                        )
    if ("kafka.strimzi.io/v1", "KafkaUser") not in schemas:
        with open(kafkauser_schema) as f:
            schemas[("kafka.strimzi.io/v1", "KafkaUser")] = yaml.safe_load(f)
    return schemas


def where(doc):
    md = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{md.get('name')}"


def check_schemas(docs, strimzi, node_validator, errors):
    third_party = []
    for doc in docs:
        api = doc.get("apiVersion", "")
        group = api.split("/")[0] if "/" in api else ""
        if group == "kafka.strimzi.io":
            schema = strimzi.get((api, doc.get("kind")))
            if schema is None:
                errors.append(f"{where(doc)}: {api} is not a served version of a Strimzi 1.2 CRD")
                continue
            v = jsonschema.Draft7Validator(schema)
            for e in sorted(v.iter_errors(doc), key=lambda e: list(e.path)):
                path = "/".join(str(p) for p in e.path)
                errors.append(f"{where(doc)}: {path}: {e.message}")
        elif group in THIRD_PARTY_GROUPS:
            third_party.append(doc)
        elif "." in group and not group.endswith(".k8s.io"):
            errors.append(f"{where(doc)}: no schema known for {api}")
        else:
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                errors.append(f"{where(doc)}: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{where(doc)}: {e}")
    if third_party:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(third_party, f)
            path = f.name
        try:
            r = subprocess.run(
                ["node", node_validator, path], capture_output=True, text=True, check=False
            )
        finally:
            os.unlink(path)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            errors.append(f"prometheus-operator/KEDA validation failed:\n{r.stderr.strip()}")


def containers(doc):
    spec = (doc.get("spec") or {}).get("template", {}).get("spec", {})
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def check_rules(docs, overlay, errors):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)

    for d in docs:
        api = d.get("apiVersion", "")
        if api == "kafka.strimzi.io/v1beta2":
            errors.append(f"{where(d)}: kafka.strimzi.io/v1beta2 was removed in Strimzi 1.0")
        if d.get("kind") == "Job":
            errors.append(f"{where(d)}: Jobs are immutable on upgrade; migrate in an init container")
        for c in containers(d):
            image = c.get("image", "")
            if image.split(":")[0].split("@")[0] == "tradewind" and ":" not in image:
                errors.append(
                    f"{where(d)}: container {c['name']} image {image!r} not set by kustomize images:"
                )

    for kind in ("PodMonitor", "PrometheusRule"):
        for d in by_kind.get(kind, []):
            labels = (d.get("metadata") or {}).get("labels") or {}
            if not labels.get("release"):
                errors.append(
                    f"{where(d)}: no `release` label: kube-prometheus-stack would not select it"
                )
    if not by_kind.get("PodMonitor") or not by_kind.get("PrometheusRule"):
        errors.append("no PodMonitor or no PrometheusRule rendered")

    for d in by_kind.get("Kafka", []):
        version = str(d["spec"]["kafka"].get("version", ""))
        if not version.startswith(KAFKA_VERSION_PREFIXES):
            errors.append(f"{where(d)}: Kafka {version} is not a version Strimzi 1.2 runs")

    partitions = {
        (t["spec"].get("topicName") or t["metadata"]["name"]): t["spec"].get("partitions")
        for t in by_kind.get("KafkaTopic", [])
    }
    for so in by_kind.get("ScaledObject", []):
        for trig in so["spec"].get("triggers", []):
            if trig.get("type") != "kafka":
                continue
            topic = trig["metadata"].get("topic")
            limit = partitions.get(topic)
            top = so["spec"].get("maxReplicaCount")
            if limit is None:
                errors.append(f"{where(so)}: trigger topic {topic!r} has no KafkaTopic")
            elif not isinstance(limit, int) or not isinstance(top, int) or top > limit:
                errors.append(
                    f"{where(so)}: maxReplicaCount {top} exceeds the {limit} partitions of {topic}"
                )

    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"]["name"].startswith("tradewind-config"):
            data = cm.get("data") or {}
            if data.get("TRADEWIND_CREATE_TOPICS") != "false":
                errors.append(f"{where(cm)}: TRADEWIND_CREATE_TOPICS must be false (KafkaTopics own topics)")
            if data.get("TRADEWIND_PARTITIONS") != "0":
                errors.append(f"{where(cm)}: TRADEWIND_PARTITIONS must be 0 (ingest must not create topics)")

    engines = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "tradewind-engine"]
    if not engines:
        errors.append("no Deployment tradewind-engine")
    for d in engines:
        inits = d["spec"]["template"]["spec"].get("initContainers") or []
        if not any((c.get("args") or [None])[0] == "migrate" for c in inits):
            errors.append(f"{where(d)}: no init container running `tradewind migrate`")
        # Least privilege: the long-running engine logs in as the DML-only user, not the schema owner.
        for c in d["spec"]["template"]["spec"].get("containers") or []:
            for env in c.get("env") or []:
                if env.get("name") == "TRADEWIND_MYSQL_URL":
                    key = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("key")
                    if key != "engine-url":
                        errors.append(f"{where(d)}: container {c['name']} uses MySQL URL key {key!r}, "
                                      "not the DML-only engine-url")


# Each mutation reproduces a defect this checker must catch; --self-test applies them one at a time to a
# valid rendered overlay and fails if any goes unnoticed (so the checker can never silently pass all).
def _set(path, value):
    def apply(docs):
        kind, name, keys = path
        for d in docs:
            if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
                obj = d
                for k in keys[:-1]:
                    obj = obj[k]
                obj[keys[-1]] = value
                return True
        return False

    return apply


def _drop_label(kind):
    def apply(docs):
        for d in docs:
            if d.get("kind") == kind:
                return d["metadata"].get("labels", {}).pop("release", None) is not None
        return False

    return apply


MUTATIONS = {
    "v1beta2 Kafka": _set(("Kafka", None, ["apiVersion"]), "kafka.strimzi.io/v1beta2"),
    "Kafka 4.1.0": _set(("Kafka", None, ["spec", "kafka", "version"]), "4.1.0"),
    "unknown field in a Kafka listener": _set(("Kafka", None, ["spec", "kafka", "listeners", 0, "tlss"]), True),
    "string partitions in a KafkaTopic": _set(("KafkaTopic", "trades", ["spec", "partitions"]), "12"),
    "singular ACL operation (v1beta2 style)": _set(
        ("KafkaUser", None, ["spec", "authorization", "acls", 0, "operation"]), "Read"),
    "unknown field in a Deployment": _set(("Deployment", None, ["spec", "replica"]), 2),
    "wrong type in a NetworkPolicy": _set(("NetworkPolicy", None, ["spec", "policyTypes"]), "Ingress"),
    "integer port in a PodMonitor": _set(("PodMonitor", None, ["spec", "podMetricsEndpoints", 0, "port"]), 9100),
    "rules not a list in a PrometheusRule": _set(("PrometheusRule", None, ["spec", "groups", 0, "rules"]), "x"),
    "PodMonitor without release label": _drop_label("PodMonitor"),
    "PrometheusRule without release label": _drop_label("PrometheusRule"),
    "placeholder image": _set(("Deployment", "tradewind-engine", ["spec", "template", "spec", "containers", 0, "image"]), "tradewind"),
    "apps create topics": _set(("ConfigMap", None, ["data", "TRADEWIND_CREATE_TOPICS"]), "true"),
    "engine as the schema owner": _set(("Deployment", "tradewind-engine", [
        "spec", "template", "spec", "containers", 0, "env", 0, "valueFrom", "secretKeyRef", "key"]), "url"),
    "no migrate init container": _set(("Deployment", "tradewind-engine", ["spec", "template", "spec", "initContainers"]), []),
    "ScaledObject above the partition count": _set(("ScaledObject", None, ["spec", "maxReplicaCount"]), 24),
    "ScaledObject string maxReplicaCount": _set(("ScaledObject", None, ["spec", "maxReplicaCount"]), "12"),
}


def self_test(path, strimzi, node_validator):
    """Applies each mutation to the valid rendering at `path`; returns how many were NOT caught."""
    with open(path) as f:
        base = [d for d in yaml.safe_load_all(f) if d]
    missed = 0
    for name, mutate in MUTATIONS.items():
        docs = copy.deepcopy(base)
        if not mutate(docs):
            print(f"skip self-test {name!r}: nothing to mutate in {path}")
            continue
        errors = []
        check_schemas(docs, strimzi, node_validator, errors)
        check_rules(docs, path, errors)
        if errors:
            print(f"ok   self-test {name!r}: caught ({errors[0].splitlines()[-1][:120]})")
        else:
            print(f"FAIL self-test {name!r}: NOT caught")
            missed += 1
    return missed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strimzi-crds", required=True)
    ap.add_argument("--kafkauser-schema", required=True)
    ap.add_argument("--node-validator", required=True)
    ap.add_argument("--self-test", metavar="RENDERED", help="check that broken copies of this file fail")
    ap.add_argument("rendered", nargs="*", help="kubectl kustomize output, one file per overlay")
    args = ap.parse_args()
    strimzi = load_strimzi(args.strimzi_crds, args.kafkauser_schema)
    if args.self_test:
        return 1 if self_test(args.self_test, strimzi, args.node_validator) else 0
    failed = 0
    for path in args.rendered:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        errors = []
        check_schemas(docs, strimzi, args.node_validator, errors)
        check_rules(docs, path, errors)
        kinds = sorted({d["kind"] for d in docs})
        if errors:
            failed += 1
            print(f"FAIL {path}: {len(docs)} objects, {len(errors)} errors")
            for e in errors:
                print(f"  - {e}")
        else:
            print(f"ok   {path}: {len(docs)} objects valid ({', '.join(kinds)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
