// Validates prometheus-operator (PodMonitor, PrometheusRule) and KEDA (ScaledObject, TriggerAuthentication)
// objects against the CRD schemas compiled into the npm packages @kubernetes-models/prometheus-operator and
// @kubernetes-models/keda. Usage: TW_NPM_DIR=<dir with node_modules> node validate_crs.mjs objects.json
// Exits 1 and prints every error if any object is invalid or of a kind it has no schema for.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.env.TW_NPM_DIR;
if (!dir) {
  console.error("TW_NPM_DIR is not set");
  process.exit(2);
}
const load = (p) => import(pathToFileURL(join(dir, "node_modules", "@kubernetes-models", p, "index.js")).href);
const groups = {
  "monitoring.coreos.com/v1": await load("prometheus-operator/monitoring.coreos.com/v1"),
  "keda.sh/v1alpha1": await load("keda/keda.sh/v1alpha1"),
};

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const obj of objects) {
  const name = `${obj.kind}/${obj.metadata?.name}`;
  const Model = groups[obj.apiVersion]?.[obj.kind];
  if (!Model) {
    console.error(`${name}: no schema for ${obj.apiVersion} ${obj.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    console.error(`${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
